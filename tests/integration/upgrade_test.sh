#!/usr/bin/env bash
# An upgrade that keeps the queue: the store the previous release wrote (tests/fixtures/store-v5,
# schema 5, records in every state it knew) is opened by this connector. status shows what the old
# release left; the daemon migrates the store in one transaction and delivers what waited, the
# records in flight at the old daemon's SIGKILL included; the held follow-up goes once its
# procedure is delivered; dead letters and rejected records stay until replayed or corrected. The
# EHR is the one the old release delivered to: the sandbox keeps nothing across restarts, so its
# contents are put back from the fixture first. Its writes are idempotent, so the transactions it
# counts and the sync log's sent events show that nothing the old release delivered is sent again.
# A store of a newer version is refused and left as it was; a migration that fails leaves nothing.
# Prints "N passed, M failed". Nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
fixture=${UPGRADE_FIXTURE:-$root/tests/fixtures/store-v5}  # another folder: to see the test fail on a broken copy
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# The EHR as the previous release left it, extensions it sent included (see the fixture's README).
certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null || exit 1
start_sandbox main "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --profiles "$fixture/ehr-extensions.json" ${SANDBOX_VERBOSE:+--verbose} || exit 1
state_of_ehr() { node "$root/tests/integration/sandbox-ctl.mjs" "$BASE_main" "$certs" "$@"; }
stat_of() { ctl stats | node -e "console.log(JSON.parse(require('fs').readFileSync(0,'utf8')).$1)"; }
in_file=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$fixture/ehr-state.json','utf8')).entry.length)")
check "the EHR's earlier contents are put back" [ "$(state_of_ehr restore "$fixture/ehr-state.json")" = "{\"restored\":$in_file}" ]
transactions0=$(stat_of transactions) requests0=$(stat_of requests)

# Each store is a copy: the fixture itself is never opened. Git keeps no file modes, so the key's is set.
store_copy() {
  mkdir -p "$1"
  cp "$fixture/outbox.db" "$1/outbox.db"
  install -m 600 "$fixture/outbox.db.key" "$1/outbox.db.key"
  cat > "$1/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 } }
JSON
}
# This build's schema version (connector/outbox/sqlite_outbox.h): 6 added claims, 7 the ledger.
current_schema=7
version() { sqlite3 -readonly "$1" "PRAGMA user_version"; }
# The file's bytes and what a reader sees (a write could sit in the WAL, beside the file).
store_sum() { { sha256sum < "$1"; sqlite3 -readonly "$1" ".dump" "PRAGMA user_version"; } | sha256sum; }
records_json() { "$bin" status --config "$1" --json | node -e "
  const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log(JSON.stringify({...s.records, quarantined: s.quarantined}))"; }
# States in the order status lists them, and the rejected ones.
as_status() { node -e "
  const [d,p,r,i,h,x,s,q]=process.argv.slice(1).map(Number);
  console.log(JSON.stringify({pending:p,in_flight:i,retry_scheduled:r,delivered:d,dead:x,superseded:s,held:h,quarantined:q}))" "$@"; }
# The rows the old release wrote, as they were: migration must keep every one.
rows() { sqlite3 -readonly "$1" "SELECT seq, record_id, revision, record_type, patient_key, state, attempts,
  next_attempt_at, last_error, ehr_response, received_at, updated_at, hex(sha3(body)) FROM records ORDER BY seq;
  SELECT id, source, record_id, hex(sha3(body)), problems, received_at FROM quarantine ORDER BY id;
  SELECT * FROM lanes ORDER BY patient_key"; }

# 1. What the fixture is: schema 5, the counts its README gives (read against make-store.sh).
store_copy "$work/look"
check "the fixture is a store of schema version 5" [ "$(version "$work/look/outbox.db")" = 5 ]
old_rows=$(rows "$work/look/outbox.db")
#                 delivered pending retry in_flight held dead superseded quarantined
expected_before=$(as_status 6 11 2 2 1 2 1 2)
seen_before=$(records_json "$work/look/connector.jsonc")
check "status shows the records as the previous release left them" [ "$seen_before" = "$expected_before" ]
[ "$seen_before" = "$expected_before" ] || echo "  status: $seen_before; the fixture's README: $expected_before"
# status opens the store like any command, so that copy has been migrated now.
check "... and that copy is at schema $current_schema now" [ "$(version "$work/look/outbox.db")" = "$current_schema" ]
check "... with the ledger of single-mode writes, empty" \
  [ "$(sqlite3 -readonly "$work/look/outbox.db" "SELECT COUNT(*) FROM ledger")" = 0 ]
check "... every row kept as it was" [ "$(rows "$work/look/outbox.db")" = "$old_rows" ]

# 2. A migration that fails half-way leaves nothing of itself: an index named like a table the
#    migration creates makes its last step fail, after the columns were added.
store_copy "$work/half"
sqlite3 "$work/half/outbox.db" "CREATE INDEX owners ON alerts (key)"
half_sum=$(store_sum "$work/half/outbox.db")
"$bin" status --config "$work/half/connector.jsonc" > /dev/null 2> "$work/half.err"; rc=$?
check "a migration that fails: the command fails" [ "$rc" -ne 0 ]
check "... naming the store" grep -q "outbox.db" "$work/half.err"
check "... the store still at schema 5" [ "$(version "$work/half/outbox.db")" = 5 ]
check "... without the columns the migration added before it failed" \
  [ "$(sqlite3 -readonly "$work/half/outbox.db" "SELECT COUNT(*) FROM pragma_table_info('records') WHERE name = 'claim_owner'")" = 0 ]
check "... the store as it was" [ "$(store_sum "$work/half/outbox.db")" = "$half_sum" ]

# 3. A store of a newer connector: refused, naming both versions, and left untouched.
store_copy "$work/newer"
sqlite3 "$work/newer/outbox.db" "PRAGMA user_version = 99"
newer_sum=$(store_sum "$work/newer/outbox.db")
"$bin" status --config "$work/newer/connector.jsonc" > /dev/null 2> "$work/newer-status.err"; rc=$?
check "a store of schema 99: status refuses it" [ "$rc" -ne 0 ]
check "... naming both versions" grep -q "schema version 99, newer than this connector's ($current_schema)" "$work/newer-status.err"
timeout 30 "$bin" run --config "$work/newer/connector.jsonc" > /dev/null 2> "$work/newer-run.err"; rc=$?
check "... and the daemon does not start on it" [ "$rc" -ne 0 -a "$rc" -ne 124 ]
check "... saying why" grep -q "schema version 99, newer than this connector's ($current_schema)" "$work/newer-run.err"
check "... the store left untouched" [ "$(store_sum "$work/newer/outbox.db")" = "$newer_sum" ]
check "... still at schema 99" [ "$(version "$work/newer/outbox.db")" = 99 ]
check "... with none of version 6's tables or columns" [ "$(sqlite3 -readonly "$work/newer/outbox.db" "SELECT
  (SELECT COUNT(*) FROM sqlite_master WHERE name IN ('owners', 'meta')) + (SELECT COUNT(*) FROM pragma_table_info('records') WHERE name = 'claim_owner')")" = 0 ]
check "... and nothing was sent" [ "$(stat_of requests)" = "$requests0" ]

# 4. The upgrade itself: the daemon on the store as the previous release left it.
d=$work/clinic
store_copy "$d"
config=$d/connector.jsonc
check "the store to upgrade is at schema 5" [ "$(version "$d/outbox.db")" = 5 ]
settled() { [ "$("$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log(r.pending+r.in_flight+r.retry_scheduled+r.held)")" = 0 ]; }
start_daemon "$config"
check "the daemon migrated the store to schema $current_schema" [ "$(version "$d/outbox.db")" = "$current_schema" ]
# The retry the old release scheduled is due 30 s after the fixture was written: long past, unless
# the fixture was made just now.
check "it delivers what waited: pending, retry scheduled, in flight, held" wait_for 90 settled
check "... dead letters and superseded revisions stay, the rejected ones too" \
  [ "$(records_json "$config")" = "$(as_status 22 0 0 0 0 2 1 2)" ]

# What went to the EHR, from the sync log and the EHR's own counters.
"$bin" log --config "$config" --json > "$work/log.jsonl"
events() { node -e "
  const lines=require('fs').readFileSync('$work/log.jsonl','utf8').trim().split('\n').map(JSON.parse);
  console.log(lines.filter(e => e.event === '$1').map(e => e.record_id + '/r' + e.revision).join(' '))"; }
sorted() { tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'; }
earlier="UA-C-0/r1 UA-P-0/r1 UD-C-0/r1 UD-F-0/r1 UD-P-0/r1 UH-C-0/r1"
waiting="UA-P-0/r2 UF-C-0/r1 UF-C-1/r1 UH-F-0/r1 UH-P-0/r1 UP-C-0/r1 UP-C-1/r1 UP-F-0/r1 UP-F-1/r1 UP-P-0/r1 UP-P-1/r1
  UR-C-0/r1 UR-C-1/r1 UR-P-0/r1 UR-P-1/r1 US-C-0/r2"
waiting=$(echo $waiting | sorted)
sent=$(events sent | sorted)
check "each waiting record was sent exactly once, and nothing else" [ "$sent" = "$waiting" ]
[ "$sent" = "$waiting" ] || echo "  sent: $sent"
check "... each delivered" [ "$(events delivered | sorted)" = "$waiting" ]
# The EHR's writes are idempotent, so a record sent again would leave no trace in what it holds:
# its counters and the sync log are where a second delivery shows.
check "the EHR got exactly those 16 transactions, all committed (nothing delivered before went again)" \
  [ "$(stat_of transactions)/$(stat_of failedTransactions)" = "$((transactions0 + 16))/0" ]
check "the two records in flight were taken back from the old daemon" \
  [ "$(node -e "
    const lines=require('fs').readFileSync('$work/log.jsonl','utf8').trim().split('\n').map(JSON.parse);
    console.log(lines.filter(e => e.event === 'claim_recovered' && /earlier version/.test(e.detail)).map(e => e.record_id).sort().join(' '))")" = "UF-C-0 UF-C-1" ]
order_ok() { node -e "
  const lines=require('fs').readFileSync('$work/log.jsonl','utf8').trim().split('\n').map(JSON.parse);
  const at = (id, ev) => lines.findIndex(e => e.record_id === id && e.event === ev);
  const pairs = process.argv.slice(1).map(p => p.split('<'));
  process.exit(pairs.every(([a, b]) => at(a, 'delivered') >= 0 && at(a, 'delivered') < at(b, 'sent')) ? 0 : 1)" "$@"; }
check "the held follow-up went after its procedure" order_ok "UH-P-0<UH-F-0"
check "each lane kept its order behind a retried record" order_ok "UR-C-0<UR-P-0" "UR-C-1<UR-P-1"

# At the EHR: each record's Encounter once, each delivered revision's Provenance once.
ehr_index() {
  { ctl get "Encounter?_count=10000"; ctl get "Provenance?_count=10000"; } | node -e "
    const [enc, prov] = require('fs').readFileSync(0,'utf8').trim().split('\n').map(JSON.parse);
    const n = {};
    for (const e of enc.entry ?? []) for (const i of e.resource.identifier ?? []) n[i.value] = (n[i.value] ?? 0) + 1;
    for (const e of prov.entry ?? []) for (const t of e.resource.meta?.tag ?? []) n[t.code] = (n[t.code] ?? 0) + 1;
    console.log(JSON.stringify({ encounters: enc.entry?.length ?? 0, provenances: prov.entry?.length ?? 0, n }))"; }
once_each() { node -e "
  const x = JSON.parse(process.argv[1]); const bad = [];
  for (const rev of process.argv.slice(3)) {
    const id = rev.split('/')[0];
    if (x.n[id + '/encounter'] !== 1) bad.push(id + ' has ' + (x.n[id + '/encounter'] ?? 0) + ' Encounters');
    if (x.n[rev] !== 1) bad.push(rev + ' has ' + (x.n[rev] ?? 0) + ' Provenances');
  }
  if (x.provenances !== Number(process.argv[2])) bad.push(x.provenances + ' Provenances, not ' + process.argv[2]);
  if (bad.length) { console.log('  ' + bad.join('; ')); process.exit(1); }" "$@"; }
index=$(ehr_index)
check "every record is at the EHR exactly once (22 revisions)" once_each "$index" 22 $earlier $waiting
check "... the superseded revision and the dead letters not at all" node -e "
  const x = JSON.parse(process.argv[1]);
  process.exit(['US-C-0/r1', 'UX-C-0/encounter', 'UX-C-1/encounter'].every(k => !x.n[k]) ? 0 : 1)" "$index"
check "... 10 patients, none twice" [ "$(ctl count Patient)" = 10 ]
# The amendment updated what the old release made, in place: the same Procedure, version 2.
procedure_before=$(node -e "
  const b=JSON.parse(require('fs').readFileSync('$fixture/ehr-state.json','utf8'));
  console.log(b.entry.find(e => e.resource.resourceType === 'Procedure' &&
    e.resource.identifier.some(i => i.value === 'UA-P-0/procedure'))?.resource.id ?? 'none')")
check "the amendment updated the old release's Procedure in place" [ "$(ctl get "Procedure?_count=10000" | node -e "
  const b=JSON.parse(require('fs').readFileSync(0,'utf8'));
  const p=b.entry.map(e => e.resource).filter(r => r.identifier.some(i => i.value === 'UA-P-0/procedure'));
  console.log(p.length === 1 ? p[0].id + ' ' + p[0].meta.versionId : p.length + ' found')")" = "$procedure_before 2" ]

# 5. A dead letter replayed and a rejected record corrected and sent again, after the upgrade.
transactions5=$(stat_of transactions)
"$bin" replay --config "$config" --record UX-C-0 --reason "upgrade test: the EHR takes it now" > "$work/replay.out"
check "a dead letter of the old release can be replayed" grep -q "^replayed UX-C-0 revision 1" "$work/replay.out"
sqlite3 -readonly "$d/outbox.db" "SELECT body FROM quarantine WHERE record_id = 'UQ-C-0'" | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')); r.average_pain = 7; console.log(JSON.stringify(r))" > "$work/corrected.ndjson"
"$bin" ingest --config "$config" "$work/corrected.ndjson" > "$work/corrected.out"; rc=$?
check "a record the old release rejected, corrected, is taken" [ "$rc" -eq 0 ]
check "both are delivered" wait_for 30 eval '[ "$(records_json "$config")" = "$(as_status 24 0 0 0 0 1 1 2)" ]'
stop_daemon
check "... in two more transactions, all committed" \
  [ "$(stat_of transactions)/$(stat_of failedTransactions)" = "$((transactions5 + 2))/0" ]
index=$(ehr_index)
check "... each exactly once" once_each "$index" 24 $earlier $waiting UX-C-0/r1 UQ-C-0/r1
check "... the other dead letter still not at the EHR" node -e "process.exit(JSON.parse(process.argv[1]).n['UX-C-1/encounter'] ? 1 : 0)" "$index"
check "... 12 patients, none twice" [ "$(ctl count Patient)" = 12 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
