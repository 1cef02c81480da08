#!/usr/bin/env bash
# Write mode single (issue 11) under SIGKILL, against the sandbox playing an Epic-like EHR
# (profile single: no transaction or batch, no conditional create, patients its own). A record
# goes out one request per resource, so a kill can fall between any two of them. Each crash window
# of connector/sync/plan_delivery.h is hit through a failpoint
# (MIGRAINE_TEST_FAILPOINT=NAME:N kills the process the Nth time it passes NAME):
#   after_request_written   a create or update went out, no answer yet         (window 2)
#   plan_after_answer       the EHR answered, the ledger does not know yet      (window 3)
#   after_ledger_commit     the ledger knows, the next request not sent yet     (windows 1 and 5)
# each at an early, a middle and a late request, then sync --once again until done; then a storm:
# the daemon killed at random moments while it delivers. Afterwards the EHR holds exactly what
# the profile allows, once: the same counts as a run without kills. Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; rm -rf "$work"' EXIT

certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null || exit 1
patients=3
node "$root/tests/integration/make-records.mjs" --patients 8 --prefix SM --ehr-owned > "$work/ehr-patients.ndjson"
start_sandbox main "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --profile single --preload "$work/ehr-patients.ndjson" || exit 1
node "$root/tests/integration/make-records.mjs" --patients "$patients" --prefix SM > "$work/records.ndjson"

configure() {  # configure DIR
  mkdir -p "$1"
  cat > "$1/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "patient": "match" },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 5 },
  "log": { "path": "sync.log" } }
JSON
}
# What the EHR holds of the connector's writes: the types the profile lets it create.
holdings() { echo "$(ctl count Condition)/$(ctl count Observation)/$(ctl count Procedure)/$(ctl count ServiceRequest)"; }
delivered_all() {  # delivered_all DIR N
  grep -q "records: pending 0 in_flight 0 retry_scheduled 0 delivered $2 dead 0" <("$bin" status --config "$1/connector.jsonc")
}
until_done() {  # sync --once until nothing waits (at most 20 runs)
  local runs=0
  until "$bin" sync --once --config "$1/connector.jsonc" > "$1/last.out" 2>&1; do
    runs=$((runs + 1)); [ "$runs" -ge 20 ] && break
  done
}

# The reference: no kills.
configure "$work/clean"
"$bin" ingest --config "$work/clean/connector.jsonc" "$work/records.ndjson" > /dev/null
until_done "$work/clean"
expected=$(holdings)
check "without kills: every record delivered" delivered_all "$work/clean" $((patients * 3))
check "... the EHR holds what the profile allows ($expected: Condition/Observation/Procedure/ServiceRequest)" \
  [ "$expected" = "$patients/$((patients * 18))/$patients/$((patients * 2))" ]
check "... and nothing it forbids was attempted" [ "$(ctl stats | node -e "
  const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log(Object.keys(s.refused).length)")" = 0 ]

run_case() {  # run_case POINT HIT
  local point=$1 hit=$2 d=$work/$1-$2
  configure "$d"
  ctl reset
  "$bin" ingest --config "$d/connector.jsonc" "$work/records.ndjson" > /dev/null
  ( MIGRAINE_TEST_FAILPOINT=$point:$hit "$bin" sync --once --config "$d/connector.jsonc" > "$d/killed.out" 2>&1; exit $? ) 2>/dev/null
  check "$point:$hit: the process was killed there" [ "$?" -eq 137 ]
  until_done "$d"
  check "$point:$hit: afterwards every record is delivered, none in flight" delivered_all "$d" $((patients * 3))
  check "$point:$hit: the EHR holds each resource once ($(holdings))" [ "$(holdings)" = "$expected" ]
}
for point in after_request_written plan_after_answer after_ledger_commit; do
  for hit in 1 9 40; do run_case "$point" "$hit"; done
done

# The storm: the daemon SIGKILLed at random moments while it delivers 8 patients' records.
ctl reset
d=$work/storm
configure "$d"
node "$root/tests/integration/make-records.mjs" --patients 8 --prefix SM > "$work/storm.ndjson"
"$bin" ingest --config "$d/connector.jsonc" "$work/storm.ndjson" > /dev/null
kills=0
for round in 1 2 3 4 5 6 7 8; do
  start_daemon "$d/connector.jsonc"
  sleep "0.$((RANDOM % 6 + 2))"
  kill -KILL "$daemon" 2> /dev/null && kills=$((kills + 1))
  wait "$daemon" 2> /dev/null; daemon=""
done
until_done "$d"
check "storm: $kills kills, afterwards all 24 records delivered" delivered_all "$d" 24
check "storm: nothing twice at the EHR ($(holdings))" [ "$(holdings)" = "8/144/8/16" ]
check "storm: no resource said to be possibly twice" [ "$(grep -c 'possibly twice' "$d/sync.log")" -eq 0 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
