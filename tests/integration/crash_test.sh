#!/usr/bin/env bash
# Exactly once in effect through crashes: 300 records of 100 patients; sync --once killed with
# SIGKILL at 10 random moments, then two sync --once processes on the one store, each killed at its
# own random moment, 10 times over; at the end every record is in the EHR exactly once, none is
# missing and nothing is left in flight. Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT

start_main_sandbox || exit 1
base=$BASE_main
count() { ctl count "$1"; }

cat > "$work/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$base", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 5 } }
JSON

# 100 patients, each with a consultation, an injection session and a follow-up.
node - "$root/mappings/examples" > "$work/records.ndjson" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const load = (k) => JSON.parse(fs.readFileSync(`${dir}/${k}.json`, 'utf8'));
const lines = [];
for (let i = 0; i < 100; i++) {
  const mrn = `MRN-C${i}`;
  const c = load('consultation'), p = load('procedure'), f = load('follow_up');
  c.record_id = `C-${i}`; p.record_id = `P-${i}`; f.record_id = `F-${i}`;
  p.consultation_record_id = c.record_id; f.procedure_record_id = p.record_id;
  for (const r of [c, p, f]) { r.patient.mrn = mrn; lines.push(JSON.stringify(r)); }
}
process.stdout.write(lines.join('\n') + '\n');
JS
"$bin" ingest --config "$work/connector.jsonc" "$work/records.ndjson" > /dev/null

sync_in_background() { "$bin" sync --once --config "$work/connector.jsonc" > /dev/null 2>&1 & }
random_delay() { printf '0.%03d' $((20 + RANDOM % 680)); }  # 20 to 700 ms after start

# bash notes every process killed by a signal on stderr: 30 such lines say nothing here.
exec 3>&2 2>/dev/null

# One process at a time.
kills=0
for i in $(seq 1 10); do
  sync_in_background; pid=$!
  sleep "$(random_delay)"
  if kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null
done
echo "one process: killed $kills of 10 runs mid-sync"
check "most single runs were killed mid-sync" [ "$kills" -ge 7 ]

# Two processes on one store, each killed at its own moment.
kills=0
for i in $(seq 1 10); do
  sync_in_background; a=$!
  sync_in_background; b=$!
  sleep "$(random_delay)"; kill -KILL "$a" 2>/dev/null && kills=$((kills + 1))
  sleep "$(random_delay)"; kill -KILL "$b" 2>/dev/null && kills=$((kills + 1))
  wait "$a" "$b" 2>/dev/null
done
exec 2>&3 3>&-
echo "two processes: killed $kills of 20 runs mid-sync"
check "most runs of the pairs were killed mid-sync" [ "$kills" -ge 12 ]

for _ in $(seq 1 10); do
  "$bin" sync --once --config "$work/connector.jsonc" > "$work/last-sync.out" 2>&1 && break
done
"$bin" status --config "$work/connector.jsonc" > "$work/status.out"
check "every record delivered, none in flight" grep -q "records: pending 0 in_flight 0 retry_scheduled 0 delivered 300 dead 0" "$work/status.out"
check "the kills' claims were taken back" grep -q '"event":"claim_recovered"' "$work/sync-log.jsonl"
check "one Encounter per record: none missing, none twice" [ "$(count Encounter)" -eq 300 ]
check "one Provenance per record" [ "$(count Provenance)" -eq 300 ]
check "one Patient per patient" [ "$(count Patient)" -eq 100 ]
check "one Procedure per session" [ "$(count Procedure)" -eq 100 ]
check "13 administrations per session" [ "$(count MedicationAdministration)" -eq 1300 ]
check "one Condition per consultation" [ "$(count Condition)" -eq 100 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
