#!/usr/bin/env bash
# Several connectors, one queue (issue 13): three daemons on one PostgreSQL store deliver 150
# records of 50 patients to the EHR sandbox while, again and again, one is killed (SIGKILL) and
# started again and another is frozen (SIGSTOP) for longer than its lease, then continued. At the
# end every record is in the EHR once, nothing is left in flight, and the frozen instance's late
# answers changed nothing. Needs the throwaway cluster (tests/pg/cluster.sh, MIGRAINE_TEST_PG_DIR).
# Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
cluster=${MIGRAINE_TEST_PG_DIR:?run through ctest, which starts tests/pg/cluster.sh}
schema="shared_$$"
psql_run() { PGPASSWORD=$(cat "$cluster/password") psql -q -X "$(cat "$cluster/conninfo")" -v ON_ERROR_STOP=1 -c "$1"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2> /dev/null; kill -KILL "$p" 2> /dev/null; done
  stop_sandboxes
  psql_run "DROP SCHEMA IF EXISTS $schema CASCADE" > /dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
psql_run "CREATE SCHEMA $schema" || exit 1

start_main_sandbox || exit 1
cp "$cluster/password" "$work/pg.password"
for i in 1 2 3; do
  cat > "$work/connector-$i.jsonc" <<JSON
{ "store": { "kind": "postgresql", "url": "$(cat "$cluster/conninfo") options='-csearch_path=$schema'",
             "password_file": "pg.password", "patient_key_file": "patients.key" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 50, "lease_seconds": 5 },
  "log": { "path": "sync-log-$i.jsonl" } }
JSON
done
check "config-check connects and names the schema version" \
  bash -c "'$bin' config-check --config '$work/connector-1.jsonc' | grep -q 'store PostgreSQL database migraine.*connected, schema version 1'"

node "$root/tests/integration/make-records.mjs" --patients 50 --prefix S --phi > "$work/records.ndjson"
records=$(wc -l < "$work/records.ndjson")
check "ingested into the shared store" "$bin" ingest --config "$work/connector-1.jsonc" "$work/records.ndjson"

run_instance() {  # run_instance N: starts daemon N in the background, sets pids[N]
  "$bin" run --config "$work/connector-$1.jsonc" >> "$work/run-$1.out" 2>> "$work/run-$1.err" &
  pids[$1]=$!
}
exec 3>&2 2> /dev/null  # bash reports each SIGKILL: nothing to say here
for i in 1 2 3; do run_instance "$i"; done
delivered() { "$bin" status --config "$work/connector-1.jsonc" --json | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(String(s.records.delivered))'; }
kills=0 freezes=0
for round in 1 2 3; do
  sleep "0.$((3 + RANDOM % 5))"
  kill -KILL "${pids[1]}" && kills=$((kills + 1)); wait "${pids[1]}"
  kill -STOP "${pids[2]}" && freezes=$((freezes + 1))
  run_instance 1
  sleep 6  # longer than its 5 s lease: the others take its claims over
  kill -CONT "${pids[2]}"
done
exec 2>&3 3>&-
echo "killed $kills times, froze $freezes times past the lease"
all_in() { [ "$(delivered)" -eq "$records" ]; }
check "every record delivered by the three" wait_for 120 all_in
"$bin" status --config "$work/connector-1.jsonc" > "$work/status.out"
check "nothing pending, in flight or dead" \
  grep -q "records: pending 0 in_flight 0 retry_scheduled 0 delivered $records dead 0" "$work/status.out"
check "the instances are listed, each with its machine" grep -q "on $(hostname)" "$work/status.out"
check "one Encounter per record: none missing, none twice" [ "$(ctl count Encounter)" -eq "$records" ]
check "one Provenance per record" [ "$(ctl count Provenance)" -eq "$records" ]
check "one Patient per patient" [ "$(ctl count Patient)" -eq 50 ]
check "a killed or frozen instance's claims were taken over" \
  bash -c "cat '$work'/sync-log-*.jsonl | grep -q '\"event\":\"claim_recovered\"'"
check "no patient data in the instances' output or status" \
  bash -c "! cat '$work'/run-*.err '$work'/sync-log-*.jsonl '$work/status.out' | grep -Eq 'Zebulonquux|Ottoline|MRNZQX|1931-07-19'"
for i in 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 1 2 3; do wait "${pids[$i]}"; done
pids=()
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
