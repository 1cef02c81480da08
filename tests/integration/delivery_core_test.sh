#!/usr/bin/env bash
# The delivery core under the probes of issue 8's review, against the EHR sandbox over mutual TLS:
#   1. another process holds the store's write lock longer than the busy timeout while records are
#      in flight and arriving: the daemon waits, recovers by itself, and loses nothing;
#   2. sync --once beside a daemon with a record in flight: it leaves the daemon's lane alone, and
#      the EHR ends at the newest revision;
#   3. an amendment after a lost answer retracts what the lost revision made;
#   4. an inbox file is taken while the EHR sits on a slow request, and /healthz answers meanwhile
#      (as it does in 1 while an ingest waits for the locked store);
#   5. a second daemon on one store, and a wrong patient key, are refused with a clear message.
# Prints "N passed, M failed". Waits poll with a deadline; nothing asserts on elapsed time.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
daemon=""
trap '[ -n "$daemon" ] && kill "$daemon" 2>/dev/null; stop_sandboxes; rm -rf "$work"' EXIT

start_main_sandbox || exit 1
records() { node "$root/tests/integration/make-records.mjs" "$@"; }
json() { node -e "const j=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }

# clinic NAME [EXTRA_JSON]: a folder with a configuration for a daemon with an inbox, an ingest API
# (plain HTTP on loopback, a token) and an admin server.
clinic() {
  local d=$work/$1
  mkdir -p "$d/inbox"
  echo "token-$RANDOM$RANDOM" > "$d/ingest.token"
  cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db", "busy_timeout_ms": 300 },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 20 },
  "sync": { "base_delay_ms": ${2:-1}, "max_delay_ms": 2000 },
  "inbox": { "dir": "inbox", "poll_ms": 100 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token" },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "sync.log" } }
JSON
  echo "$d"
}
# start_daemon DIR [ENV=VALUE...]: runs the daemon, waits for its listeners, sets api and admin.
start_daemon() {
  local d=$1; shift
  env "$@" "$bin" run --config "$d/connector.jsonc" > "$d/run.out" 2> "$d/run.err" &
  daemon=$!
  wait_for 20 grep -q "status page" "$d/run.err" || { echo "the daemon did not start:"; cat "$d/run.err"; exit 1; }
  api=$(sed -n 's|.*ingest API on \(http://[^ ]*/v1/records\).*|\1|p' "$d/run.err" | head -1)
  admin=$(sed -n 's|.*admin API on \(http://[^ ]*\)/$|\1|p' "$d/run.err" | head -1)
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; local rc=$?; daemon=""; return $rc; }
post() {  # post DIR FILE: NDJSON to the ingest API; prints the status code
  node "$root/tests/integration/https-request.mjs" POST "$api" --token "$(head -1 "$1/ingest.token")" \
    --type application/x-ndjson --body-file "$2" | head -1
}
settled() {  # settled DIR N: N records delivered and none pending, in flight or waiting
  "$bin" status --config "$1/connector.jsonc" --json |
    node -e "const j=JSON.parse(require('fs').readFileSync(0,'utf8')).records;
             process.exit(j.delivered === $2 && j.pending + j.in_flight + j.retry_scheduled + j.held === 0 ? 0 : 1)"
}
logged() { grep -c "\"event\":\"$2\"" "$1/sync.log"; }

# ---- 1. The write lock held by another process, longer than the busy timeout -----------------
d1=$(clinic lock)
start_daemon "$d1"
records --patients 3 --prefix LOCK > "$work/lock-1.ndjson"
ctl faults '{"delayMs": 2500, "count": 2}'                # two records sit at the EHR a while
"$bin" ingest --config "$d1/connector.jsonc" "$work/lock-1.ndjson" > /dev/null
check "1: records are in flight" wait_for 20 sh -c "[ \"\$('$bin' status --config '$d1/connector.jsonc' --json |
  node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(0,\"utf8\")).records.in_flight)')\" -ge 1 ]"
# Another process takes the write lock for 6 s (the busy timeout is 300 ms, tried 3 times).
( echo "BEGIN IMMEDIATE;"; sleep 6; echo "COMMIT;" ) | sqlite3 "$d1/outbox.db" &
locker=$!
sleep 0.5
records --patients 1 --prefix LOCKAPI > "$work/lock-api.ndjson"
# The ingest waits for the lock (0.9 s, then gives up); /healthz is asked meanwhile, again and again.
node "$root/tests/integration/healthz-during-ingest.mjs" "$api" "$(head -1 "$d1/ingest.token")" "$work/lock-api.ndjson" \
  "$admin" > "$work/lock-healthz.json"
check "1: the ingest API answers 503 while the store is locked, storing nothing" [ "$(json j.ingest_status < "$work/lock-healthz.json")" = 503 ]
check "1: /healthz answered while that ingest waited for the store" [ "$(json j.healthz_answers_during_ingest < "$work/lock-healthz.json")" -ge 1 ]
check "1: ... and never failed" [ "$(json j.healthz_failures < "$work/lock-healthz.json")" -eq 0 ]
wait "$locker"
check "1: ... and 202 once it is free" [ "$(post "$d1" "$work/lock-api.ndjson")" = 202 ]
records --patients 1 --prefix LOCKAFTER > "$work/lock-after.ndjson"
"$bin" ingest --config "$d1/connector.jsonc" "$work/lock-after.ndjson" > /dev/null
check "1: every record is delivered, nothing left in flight" wait_for 60 settled "$d1" 15
check "1: the daemon went into the store's degraded mode" [ "$(logged "$d1" store_degraded)" -ge 1 ]
check "1: ... and left it by itself" [ "$(logged "$d1" store_restored)" -eq "$(logged "$d1" store_degraded)" ]
check "1: the waits were logged as store_busy" [ "$(logged "$d1" store_busy)" -ge 1 ]
check "1: the daemon is still the one that started" kill -0 "$daemon"
check "1: the EHR holds each record once: 15 Encounters" [ "$(ctl count Encounter)" -eq 15 ]
check "1: ... and 5 Procedures, one per patient" [ "$(ctl count Procedure)" -eq 5 ]
check "1: SIGTERM: exit 0" stop_daemon
ctl reset

# ---- 2. sync --once beside a daemon that has a record in flight ----------------------------
d2=$(clinic beside)
# revision N of the consultation, its visit ending at minute N: what the EHR holds tells which arrived last.
revision() {
  node -e "const r=JSON.parse(require('fs').readFileSync('$root/mappings/examples/consultation.json','utf8'));
           r.record_id='BESIDE-C'; r.revision=$1; r.visit.end='2026-08-03T10:1$1:00-05:00';
           console.log(JSON.stringify(r))" > "$work/beside-r$1.json"
}
start_daemon "$d2"
revision 1; "$bin" ingest --config "$d2/connector.jsonc" "$work/beside-r1.json" > /dev/null
check "2: revision 1 delivered" wait_for 20 settled "$d2" 1
ctl faults '{"delayMs": 3000, "count": 1}'
revision 2; "$bin" ingest --config "$d2/connector.jsonc" "$work/beside-r2.json" > /dev/null
check "2: revision 2 is in flight at the daemon" wait_for 20 sh -c "'$bin' status --config '$d2/connector.jsonc' | grep -q 'in_flight 1'"
revision 3; "$bin" ingest --config "$d2/connector.jsonc" "$work/beside-r3.json" > /dev/null
"$bin" sync --once --config "$d2/connector.jsonc" > "$work/beside-sync.out" 2>&1; rc=$?
check "2: sync --once leaves the daemon's lane alone (exit 3: records still wait)" [ "$rc" -eq 3 ]
check "2: ... and sent nothing" grep -q "^delivered 0, retries scheduled 0" "$work/beside-sync.out"
check "2: the daemon delivers revision 3 after revision 2" wait_for 30 sh -c "[ \$(grep -c '\"event\":\"delivered\".*BESIDE-C' '$d2/sync.log') -eq 3 ]"
check "2: each revision was sent once" [ "$(grep '"event":"sent"' "$d2/sync.log" | grep -c BESIDE-C)" -eq 3 ]
ctl get 'Encounter?identifier=https://clinic.example/fhir/resource|BESIDE-C/encounter' > "$work/beside-encounter.json"
check "2: the EHR holds revision 3's data" [ "$(json 'j.entry[0].resource.period.end' < "$work/beside-encounter.json")" = "2026-08-03T10:13:00-05:00" ]
check "2: SIGTERM: exit 0" stop_daemon
ctl reset

# ---- 3. An amendment after a lost answer --------------------------------------------------
d3=$(clinic lost 60000)   # a retry waits long enough for the amendment to come first
records --patients 1 --prefix LOST --kinds cp > "$work/lost.ndjson"
head -1 "$work/lost.ndjson" > "$work/lost-c.ndjson"
sed -n 2p "$work/lost.ndjson" > "$work/lost-p.ndjson"
start_daemon "$d3"
"$bin" ingest --config "$d3/connector.jsonc" "$work/lost-c.ndjson" > /dev/null
check "3: the consultation is delivered" wait_for 20 settled "$d3" 1
# The procedure commits; its answer is lost twice (the first try, and the client's resend on a fresh connection).
ctl faults '{"reset": "after-commit", "count": 2}'
"$bin" ingest --config "$d3/connector.jsonc" "$work/lost-p.ndjson" > /dev/null
check "3: the lost answer is a retry, possibly at the EHR" wait_for 20 grep -q 'possibly at the EHR' "$d3/sync.log"
check "3: SIGTERM: exit 0" stop_daemon
node -e "const r=JSON.parse(require('fs').readFileSync(0,'utf8')); r.revision=2; delete r.immediate_reactions;
         console.log(JSON.stringify(r))" < "$work/lost-p.ndjson" > "$work/lost-r2.json"
"$bin" ingest --config "$d3/connector.jsonc" "$work/lost-r2.json" > "$work/lost-ingest.out"
check "3: revision 2 supersedes the undelivered revision 1" grep -q "superseding" "$work/lost-ingest.out"
start_daemon "$d3"
check "3: revision 2 is delivered" wait_for 30 settled "$d3" 2
ctl get 'AdverseEvent?_tag=https://clinic.example/fhir/resource|LOST-P-0/adverse-event/immediate/0' > "$work/lost-ae.json"
check "3: the reaction revision 1 recorded (and revision 2 dropped) is entered-in-error" node -e "
  const j = JSON.parse(require('fs').readFileSync('$work/lost-ae.json', 'utf8'));
  const tags = j.entry[0].resource.meta.tag.map((t) => t.code);
  process.exit(j.total === 1 && tags.includes('entered-in-error') ? 0 : 1);"
check "3: one Procedure, not two" [ "$(ctl count Procedure)" -eq 1 ]
check "3: SIGTERM: exit 0" stop_daemon
ctl reset

# ---- 4. The inbox while the EHR sits on a request -------------------------------------------
d4=$(clinic slow)
start_daemon "$d4"
ctl faults '{"delayMs": 6000, "count": 2}'
records --patients 2 --prefix SLOW --kinds c > "$work/slow-1.ndjson"
"$bin" ingest --config "$d4/connector.jsonc" "$work/slow-1.ndjson" > /dev/null
check "4: two requests wait at the slow EHR" wait_for 10 sh -c "'$bin' status --config '$d4/connector.jsonc' | grep -q 'in_flight 2'"
records --patients 1 --prefix SLOWINBOX --kinds c > "$work/slow-2.ndjson.tmp"
mv "$work/slow-2.ndjson.tmp" "$d4/inbox/slow-2.ndjson"
check "4: the inbox file is taken while the EHR still has both requests" \
  wait_for 5 sh -c "test -f '$d4/inbox/processed/slow-2.ndjson' && '$bin' status --config '$d4/connector.jsonc' | grep -q 'in_flight 2'"
check "4: /healthz answers meanwhile" [ "$(node "$root/tests/integration/https-request.mjs" GET "$admin/healthz" | head -1)" = 200 ]
check "4: the status page's API answers meanwhile" [ "$(node "$root/tests/integration/https-request.mjs" GET "$admin/api/status" | head -1)" = 200 ]
check "4: all three delivered" wait_for 30 settled "$d4" 3

# ---- 5. Refusals ------------------------------------------------------------------------------
"$bin" run --config "$d4/connector.jsonc" > /dev/null 2> "$work/second.err"; rc=$?
check "5: a second daemon on the same store is refused" [ "$rc" -eq 1 ]
check "5: ... naming the running one" grep -q "another daemon (pid $daemon) is running on the store" "$work/second.err"
check "5: SIGTERM: exit 0" stop_daemon
other_key() { MIGRAINE_PATIENT_KEY=not-the-key-of-this-store-123 "$@"; }
other_key "$bin" ingest --config "$d4/connector.jsonc" "$work/slow-1.ndjson" > /dev/null 2> "$work/key.err"; rc=$?
check "5: a second key beside the key file is refused" [ "$rc" -eq 1 ]
check "5: ... naming both sources" grep -q "MIGRAINE_PATIENT_KEY and store.patient_key_file .* hold different patient keys" "$work/key.err"
mv "$d4/outbox.db.key" "$d4/moved.key"
other_key "$bin" run --config "$d4/connector.jsonc" > /dev/null 2> "$work/key.err"; rc=$?
check "5: another key alone is refused by the daemon too" [ "$rc" -eq 1 ]
check "5: ... naming where it came from" grep -q "patient key from MIGRAINE_PATIENT_KEY .* is not the key this store was created with" "$work/key.err"
check "5: ... and never printing a key" bash -c "! grep -q 'not-the-key-of-this-store' '$work/key.err'"
"$bin" run --config "$d4/connector.jsonc" > /dev/null 2> "$work/nokey.err"; rc=$?
check "5: a missing key file for a store with records is refused" [ "$rc" -eq 1 ]
check "5: ... not silently re-created" [ ! -e "$d4/outbox.db.key" ]
check "5: ... saying what to do" grep -q "restore the key file from your backup" "$work/nokey.err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
