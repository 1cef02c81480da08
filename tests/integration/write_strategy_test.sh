#!/usr/bin/env bash
# The EHR as it is (issue 11, first part): config-check reads the EHR's CapabilityStatement and
# says how each resource type would be written, against the sandbox playing a full server and an
# Epic-like one; then the running daemon meets an EHR that stops taking transactions (the sandbox
# switched to its batch profile): delivery pauses with a write_refused event, nothing becomes a
# dead letter, the records wait, and once the EHR takes transactions again everything is delivered
# once, by itself. Prints "N passed, M failed". Waits poll with a deadline.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
d=$work/clinic
mkdir -p "$d/inbox"
config=$d/connector.jsonc
cat > "$config" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 },
  "inbox": { "dir": "inbox", "poll_ms": 100 },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "sync-log.jsonl" } }
JSON
drop() {  # drop NAME PREFIX PATIENTS: a batch of whole pathways into the inbox
  node "$root/tests/integration/make-records.mjs" --patients "$3" --prefix "$2" > "$d/inbox/.$1.tmp" &&
    mv "$d/inbox/.$1.tmp" "$d/inbox/$1.ndjson"
}
count_of() { "$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log(r['$1']||0)"; }
settled() { [ "$("$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records;
  console.log((r.pending||0)+(r.in_flight||0)+(r.retry_scheduled||0)+(r.held||0))")" = 0 ]; }
write_of() { node "$root/tests/integration/https-request.mjs" GET "$admin/api/status" | node -e "
  const t=require('fs').readFileSync(0,'utf8'); const w=JSON.parse(t.slice(t.indexOf('\n')+1)).write; console.log($1)"; }
stat_of() { ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }

# config-check against a full server: one transaction per record, every type in it.
"$bin" config-check --config "$config" > "$work/full.out"; rc=$?
check "full server: config-check passes" [ "$rc" -eq 0 ]
check "full server: transaction, chosen from the CapabilityStatement" \
  grep -q "^ok     ehr.write_mode auto: transaction (the EHR advertises transaction and conditional writes" "$work/full.out"
check "full server: each type the connector writes is named with how it is sent (16)" \
  [ "$(grep -Ec "^ +[A-Za-z]+ +in the transaction: conditional create" "$work/full.out")" -eq 16 ]

# config-check against an Epic-like EHR: no transaction or batch; what it will not take is named.
ctl profile single
"$bin" config-check --config "$config" > "$work/single.out"; rc=$?
check "Epic-like EHR: config-check fails (this version cannot deliver there yet)" [ "$rc" -eq 1 ]
check "... naming the mode it would need and why" grep -q \
  "^ERROR  ehr.write_mode auto: single (the EHR advertises neither transaction nor batch.*delivery would wait: write mode single is not implemented yet" \
  "$work/single.out"
check "... Patient is not sent: the EHR does not allow creating it" \
  grep -Eq "^ +Patient +not sent \(the EHR does not allow create of Patient\)$" "$work/single.out"
check "... a type it does not list is named" \
  grep -Eq "^ +ChargeItem +not sent \(the EHR's CapabilityStatement does not list ChargeItem\)$" "$work/single.out"
check "... Observation goes one request at a time" \
  grep -Eq "^ +Observation +create, then update what the ledger names for amendments$" "$work/single.out"
check "config-check only read /metadata: nothing else was asked of the EHR" [ "$(stat_of \
  "Object.entries(s.interactions).filter(([k]) => k !== 'capabilities').reduce((a, [, n]) => a + n, 0)")" -eq 0 ]
ctl profile full

# The daemon meets an EHR that stops taking transactions.
start_daemon "$config"
delivered() { [ "$(count_of delivered)" -eq "$1" ] && settled; }
read_at_start() { [ "$(write_of 'w && w.mode')" = transaction ]; }
check "the daemon read the CapabilityStatement at start: transaction (admin API)" wait_for 20 read_at_start
check "... deliverable, every type sent" [ "$(write_of 'w.deliverable && w.types.every(t => t.sent) && w.types.length')" = 16 ]
check "... the EHR's software named" [ "$(write_of 'w.ehr_software.length > 0')" = true ]
check "... and the strategy is in the sync log" \
  grep -q '"event":"write_strategy".*ehr.write_mode auto: transaction (the EHR advertises transaction' "$d/sync-log.jsonl"
drop first A 4
check "full server: the first batch (12 records) is delivered" wait_for 60 delivered 12
ctl profile batch
refused_before=$(stat_of 's.refused.transaction||0')
drop second B 4
refused() { grep -q '"event":"write_refused"' "$d/sync-log.jsonl"; }
check "batch-only EHR: the refusal is logged as write_refused" wait_for 30 refused
check "... naming the status and the EHR's issue type" \
  grep -q '"event":"write_refused".*HTTP 405 not-supported: the EHR does not take records written this way' "$d/sync-log.jsonl"
sleep 3  # the pause doubles while refused: a few rounds of asking
refusals=$(( $(stat_of 's.refused.transaction||0') - refused_before ))
check "... asked again, but not per record ($refusals refused transactions for 12 records)" [ "$refusals" -ge 1 -a "$refusals" -le 8 ]
check "... nothing is dead-lettered" [ "$(count_of dead)" -eq 0 ]
check "... counted in the metrics" eval 'node "$root/tests/integration/https-request.mjs" GET "$admin/metrics" |
  grep -Eq "^migraine_write_refusals_total [1-9]"'

waiting() { [ "$(( $(count_of pending) + $(count_of retry_scheduled) + $(count_of in_flight) ))" -eq 12 ]; }
check "... the second batch waits, all 12 taken in" wait_for 10 waiting
check "... the daemon keeps running" kill -0 "$daemon"
read_batch() { [ "$(write_of 'w && w.mode + " " + w.deliverable')" = "batch false" ]; }
check "... it reads the CapabilityStatement again: batch, which this version cannot do yet" wait_for 30 read_batch
check "... saying so" [ "$(write_of 'w.not_deliverable_because')" = "write mode batch is not implemented yet" ]
check "... and logging the change" grep -q '"event":"write_strategy".*auto: batch (the EHR advertises batch, not transaction).*cannot deliver' "$d/sync-log.jsonl"
ctl profile full
check "transactions taken again: all 24 are delivered by itself" wait_for 90 delivered 24
check "... none dead" [ "$(count_of dead)" -eq 0 ]
check "... each once at the EHR (24 encounters)" [ "$(ctl count Encounter)" -eq 24 ]
back_to_transaction() { [ "$(write_of 'w.mode + " " + w.deliverable')" = "transaction true" ]; }
check "... and the strategy shown is transaction again" wait_for 30 back_to_transaction
stop_daemon

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
