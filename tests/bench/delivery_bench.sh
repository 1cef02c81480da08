#!/usr/bin/env bash
# Delivery benchmark: prints figures, never fails on timing.
#  - end-to-end throughput (ingest + sync --once) against a plain client posting the same bundles
#    at the same concurrency, both to the EHR sandbox over mutual TLS, in the same run (goal >= 0.8);
#  - requests per TLS handshake (goal: one handshake per connection, not per request).
# Usage: tests/bench/delivery_bench.sh BUILD_BIN_DIR [PATIENTS]
set -euo pipefail
bin=$1/migraine-connector
patients=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT
start_main_sandbox
base=$BASE_main
reset() { ctl reset; }

node - "$root/mappings/examples" "$patients" > "$work/records.ndjson" <<'JS'
const fs = require('fs');
const [dir, n] = [process.argv[2], Number(process.argv[3])];
const load = (k) => JSON.parse(fs.readFileSync(`${dir}/${k}.json`, 'utf8'));
for (let i = 0; i < n; i++) {
  const c = load('consultation'), p = load('procedure'), f = load('follow_up');
  c.record_id = `C-${i}`; p.record_id = `P-${i}`; f.record_id = `F-${i}`;
  p.consultation_record_id = c.record_id; f.procedure_record_id = p.record_id;
  for (const r of [c, p, f]) { r.patient.mrn = `MRN-B${i}`; console.log(JSON.stringify(r)); }
}
JS
records=$((patients * 3))
"$bin" map "$work/records.ndjson" > "$work/bundles.ndjson"

cat > "$work/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$base", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 } }
JSON

reset
plain_s=$(node "$root/tests/bench/plain_client.mjs" "$base" "$certs" "$work/bundles.ndjson" 2)
reset
start=$(date +%s.%N)
"$bin" ingest --config "$work/connector.jsonc" "$work/records.ndjson" > /dev/null
"$bin" sync --once --config "$work/connector.jsonc" > "$work/sync.out"
end=$(date +%s.%N)
ours_s=$(awk "BEGIN { print $end - $start }")
handshakes=$(sed -n 's/^TLS handshakes: //p' "$work/sync.out")

echo "delivery benchmark: $records records of $patients patients, 2 connections, EHR sandbox over mutual TLS"
awk -v r="$records" -v p="$plain_s" -v o="$ours_s" -v h="$handshakes" 'BEGIN {
  printf "  plain client (bundles ready-made)  %6.2f s  %6.1f records/s\n", p, r / p
  printf "  connector (ingest + map + sync)    %6.2f s  %6.1f records/s\n", o, r / o
  printf "  throughput ratio                   %6.2f   (goal: >= 0.8)\n", p / o
  printf "  requests per TLS handshake         %6.1f   (%d handshakes for %d requests)\n", r / h, h, r
}'
