#!/usr/bin/env bash
# SIGKILL at every state boundary of a record, through the connector's failpoints
# (MIGRAINE_TEST_FAILPOINT=NAME:N kills the process the Nth time it passes NAME):
#   after_claim_commit      claimed in the store, nothing sent
#   after_request_written   the request went out, no answer yet
#   after_answer            the EHR answered, nothing of it recorded
#   after_settle_commit     recorded, the log line not yet written
#   after_take_over_commit  a dead process's claims taken back, nothing sent yet
# Each: 4 patients (12 records) into a fresh store and a fresh EHR, sync --once killed at the point,
# then sync --once again until done. Afterwards the EHR holds each record exactly once and the
# store has nothing in flight. Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT

start_main_sandbox || exit 1
node "$root/tests/integration/make-records.mjs" --patients 4 --prefix FP > "$work/records.ndjson"

# killed_at POINT DIR OUT: sync --once with the failpoint (the subshell keeps bash's "Killed" note quiet).
killed_at() { ( MIGRAINE_TEST_FAILPOINT=$1 "$bin" sync --once --config "$2/connector.jsonc" > "$3" 2>&1; exit $? ) 2>/dev/null; }

# run_case NAME HIT: one kill at the failpoint, then recovery.
run_case() {
  local point=$1 hit=$2 d=$work/$1-$2
  mkdir -p "$d"
  cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 5 },
  "log": { "path": "sync.log" } }
JSON
  ctl reset
  "$bin" ingest --config "$d/connector.jsonc" "$work/records.ndjson" > /dev/null
  if [ "$point" = after_take_over_commit ]; then
    # Something to take over first: a process killed with records claimed.
    killed_at after_claim_commit "$d" /dev/null
  fi
  killed_at "$point:$hit" "$d" "$d/killed.out"
  local rc=$?
  check "$point:$hit: the process was killed there" [ "$rc" -eq 137 ]
  local runs=0
  until "$bin" sync --once --config "$d/connector.jsonc" > "$d/last.out" 2>&1; do
    runs=$((runs + 1))
    [ "$runs" -ge 20 ] && break
  done
  check "$point:$hit: afterwards every record is delivered, none in flight" \
    grep -q "records: pending 0 in_flight 0 retry_scheduled 0 delivered 12 dead 0" <("$bin" status --config "$d/connector.jsonc")
  check "$point:$hit: the EHR holds each record once (12 Encounters, 12 Provenance)" \
    [ "$(ctl count Encounter)/$(ctl count Provenance)" = 12/12 ]
  check "$point:$hit: ... 4 Patients, 4 Procedures, 52 administrations" \
    [ "$(ctl count Patient)/$(ctl count Procedure)/$(ctl count MedicationAdministration)" = 4/4/52 ]
  if [ "$point" != after_settle_commit ] && [ "$point" != after_take_over_commit ]; then
    check "$point:$hit: the killed process's claims were taken back" grep -q '"event":"claim_recovered"' "$d/sync.log"
  fi
}

for point in after_claim_commit after_request_written after_answer after_settle_commit; do
  for hit in 1 5; do run_case "$point" "$hit"; done
done
run_case after_take_over_commit 1  # sync --once takes over once, when it starts

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
