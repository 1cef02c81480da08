#!/usr/bin/env bash
# Several connectors, one queue (issue 13): three daemons on one PostgreSQL store, scanning one
# inbox folder, deliver 150 records of 50 patients (ingested beforehand) and 60 of 20 more (files
# dropped into the folder meanwhile) to the EHR sandbox while, again and again, one is killed
# (SIGKILL) and started again and another is frozen (SIGSTOP) for longer than its lease, then
# continued. At the end every record is in the EHR once, each patient's records arrived in
# order, every inbox file was taken once, nothing is left in flight, and the frozen instance's
# late answers changed nothing. Then the EHR goes down: one alert, however many instances see
# it, and its leader killed mid-incident; one close when the EHR is back.
# Needs the throwaway cluster (tests/pg/cluster.sh, MIGRAINE_TEST_PG_DIR).
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
  [ -n "${hook_pid:-}" ] && kill "$hook_pid" 2> /dev/null
  stop_sandboxes
  psql_run "DROP SCHEMA IF EXISTS $schema CASCADE" > /dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
psql_run "CREATE SCHEMA $schema" || exit 1

start_main_sandbox || exit 1
cp "$cluster/password" "$work/pg.password"
node "$root/tests/integration/webhook-receiver.mjs" "$certs/server.pem" "$certs/server.key" "$work/alerts.jsonl" \
  > "$work/hook.out" &
hook_pid=$!
wait_for 10 grep -q ready "$work/hook.out" || { echo "the webhook receiver did not start"; exit 1; }
hook_url=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/hook.out','utf8')).url)")
mkdir -p "$work/inbox"
for i in 1 2 3; do
  # Instance 3 alone finds its certificates near expiry (a condition only it sees): the leader,
  # whichever instance it is, keeps that one alert open, never flapping.
  cert_days=""; [ "$i" -eq 3 ] && cert_days=', "certificate_days": 3650'
  cat > "$work/connector-$i.jsonc" <<JSON
{ "store": { "kind": "postgresql", "url": "$(cat "$cluster/conninfo") options='-csearch_path=$schema'",
             "password_file": "pg.password", "patient_key_file": "patients.key" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 50, "lease_seconds": 5 },
  "inbox": { "dir": "inbox", "poll_ms": 50 },
  "alerts": { "webhook_url": "$hook_url", "ca_file": "$certs/ca.pem", "ehr_unreachable_minutes": 0.02$cert_days },
  "log": { "path": "sync-log-$i.jsonl" } }
JSON
done
check "config-check connects and names the schema version" \
  bash -c "'$bin' config-check --config '$work/connector-1.jsonc' | grep -q 'store PostgreSQL database migraine.*connected, schema version 2'"

node "$root/tests/integration/make-records.mjs" --patients 50 --prefix S --phi > "$work/records.ndjson"
records=$(wc -l < "$work/records.ndjson")
check "ingested into the shared store" "$bin" ingest --config "$work/connector-1.jsonc" "$work/records.ndjson"

run_instance() {  # run_instance N: starts daemon N in the background, sets pids[N]
  "$bin" run --config "$work/connector-$1.jsonc" >> "$work/run-$1.out" 2>> "$work/run-$1.err" &
  pids[$1]=$!
}
exec 3>&2 2> /dev/null  # bash reports each SIGKILL: nothing to say here
for i in 1 2 3; do run_instance "$i"; done
# Files for the shared folder, each written under a temporary name and renamed when whole: one
# patient's three records per file, and one file with 34 patients' more and a record that is
# rejected (long enough to read that every instance lists it while one takes it).
node "$root/tests/integration/make-records.mjs" --patients 20 --prefix I > "$work/inbox-records.ndjson"
node "$root/tests/integration/make-records.mjs" --patients 34 --prefix B > "$work/inbox-big.ndjson"
inbox_files=20
for n in $(seq 0 $((inbox_files - 1))); do
  sed -n "$((n * 3 + 1)),$((n * 3 + 3))p" "$work/inbox-records.ndjson" > "$work/inbox/.visit-$n.tmp"
  if [ "$n" -eq 7 ]; then
    cat "$work/inbox-big.ndjson" >> "$work/inbox/.visit-$n.tmp"
    echo '{"record_id":"I-BAD-7","record_type":"procedure"}' >> "$work/inbox/.visit-$n.tmp"
  fi
  mv "$work/inbox/.visit-$n.tmp" "$work/inbox/visit-$n.ndjson"
done
records=$((records + inbox_files * 3 + 102))
patients=$((50 + 20 + 34))
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
check "one Patient per patient" [ "$(ctl count Patient)" -eq "$patients" ]
# Each record's Provenance (tagged RECORD_ID/rREVISION) was written with its transaction: a
# patient's consultation, procedure and follow-up must have reached the EHR in that order.
ctl get 'Provenance?_count=1000' > "$work/provenance.json"
in_order() { node -e '
  const bundle = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const at = {};
  for (const { resource: p } of bundle.entry ?? []) {
    const tag = (p.meta.tag ?? []).find((t) => t.system === "https://clinic.example/fhir/provenance");
    const [, prefix, kind, i] = /^([A-Z]+)-([CPF])-(\d+)\/r1$/.exec(tag.code);
    (at[`${prefix}-${i}`] ??= {})[kind] = p.meta.lastUpdated;
  }
  const wrong = Object.entries(at).filter(([, t]) => !(t.C && t.P && t.F && t.C <= t.P && t.P <= t.F));
  if (Object.keys(at).length !== Number(process.argv[2]) || wrong.length) {
    console.error(`${Object.keys(at).length} patients, out of order or missing: ${wrong.map(([p]) => p).join(" ")}`);
    process.exit(1);
  }' "$work/provenance.json" "$patients"; }
check "each patient's records reached the EHR in order" in_order
check "every inbox file was taken: none left in the folder" [ -z "$(ls "$work/inbox" | grep -v -e '^processed$' -e '^rejected$')" ]
check "... each once: moved to processed/ or rejected/ once" \
  [ "$(ls "$work/inbox/processed" | wc -l)" -eq $((inbox_files - 1)) -a "$(ls "$work/inbox/rejected" | grep -vc errors)" -eq 1 ]
quarantined() { "$bin" status --config "$work/connector-1.jsonc" --json | node -e '
  process.stdout.write(String(JSON.parse(require("fs").readFileSync(0, "utf8")).quarantined))'; }
check "the rejected record was quarantined once, not once per instance" [ "$(quarantined)" -eq 1 ]
[ "$(quarantined)" -eq 1 ] || psql_run "SELECT id, source, record_id, received_at FROM $schema.quarantine"
check "a killed or frozen instance's claims were taken over" \
  bash -c "cat '$work'/sync-log-*.jsonl | grep -q '\"event\":\"claim_recovered\"'"
check "no patient data in the instances' output or status" \
  bash -c "! cat '$work'/run-*.err '$work'/sync-log-*.jsonl '$work/status.out' | grep -Eq 'Zebulonquux|Ottoline|MRNZQX|1931-07-19'"
alerts_posted() { grep -c "\"alert\":\"$1\",\"state\":\"$2\"" "$work/alerts.jsonl"; }
check "a condition one instance alone sees: one alert, open throughout, naming that instance" \
  [ "$(alerts_posted certificate_expiring:ehr.client_cert_file open)$(alerts_posted certificate_expiring:ehr.client_cert_file closed)" = 10 ]
cert_alert=$(psql_run "COPY (SELECT detail FROM $schema.alerts WHERE key = 'certificate_expiring:ehr.client_cert_file') TO STDOUT")
names_instance_3() { [[ "$cert_alert" == *"pid ${pids[3]} on"* && "$cert_alert" != *"pid ${pids[1]} on"* ]]; }
check "... naming that instance alone" names_instance_3

# The EHR goes down while records come in: every instance sees it, one alert is posted.
ctl faults '{"reset": true, "count": 100000}'
node "$root/tests/integration/make-records.mjs" --patients 6 --prefix DOWN > "$work/down.ndjson"
"$bin" ingest --config "$work/connector-1.jsonc" "$work/down.ndjson" > /dev/null
check "the EHR down: the alert is posted" wait_for 60 grep -q '"alert":"ehr_unreachable","state":"open"' "$work/alerts.jsonl"
leader() { "$bin" status --config "$work/connector-1.jsonc" --json | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const l = s.processes.filter((p) => p.alive && p.leads.includes("alerts"));
  if (l.length === 1) process.stdout.write(String(l[0].pid)); else process.exit(1);'; }
old_leader=$(leader)
check "status names one leader of the alerts" [ -n "$old_leader" ]
exec 3>&2 2> /dev/null
for i in 1 2 3; do
  if [ "${pids[$i]}" = "$old_leader" ]; then kill -KILL "${pids[$i]}"; wait "${pids[$i]}"; run_instance "$i"; fi
done
exec 2>&3 3>&-
new_leader() { l=$(leader) && [ "$l" != "$old_leader" ]; }
check "the leader killed: another instance leads at once (not after its 15 s lease)" wait_for 12 new_leader
sleep 6  # evaluations by the new leader, with the incident still on
check "one alert for the outage, across three instances and a new leader" [ "$(alerts_posted ehr_unreachable open)" -eq 1 ]
ctl clear-faults
check "the EHR back: the alert closes" wait_for 60 grep -q '"alert":"ehr_unreachable","state":"closed"' "$work/alerts.jsonl"
sleep 6
check "... once" [ "$(alerts_posted ehr_unreachable open)$(alerts_posted ehr_unreachable closed)" = 11 ]
all_down_in() { [ "$(delivered)" -eq $((records + 18)) ]; }
check "the records that waited for the EHR are delivered" wait_for 60 all_down_in
for i in 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 1 2 3; do wait "${pids[$i]}"; done
pids=()
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
