#!/usr/bin/env bash
# Write modes benchmark (issue 11): the same records delivered by sync --once in each write mode,
# against the same sandbox in the same run, each mode against the profile it is for:
#   transaction -> full, batch -> batch, single -> single (Epic-like, patients preloaded and matched)
# and single against full as well (every type written, one request each: the cost of the mode
# itself). Prints records/s, HTTP requests per record and the ratio to transaction. Never fails
# on timing. Usage: tests/bench/write_modes_bench.sh BUILD_BIN_DIR [PATIENTS]
set -euo pipefail
bin=$1/migraine-connector
patients=${2:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT
certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null
node "$root/tests/integration/make-records.mjs" --patients "$patients" --prefix WB --ehr-owned > "$work/ehr-patients.ndjson"
node "$root/tests/integration/make-records.mjs" --patients "$patients" --prefix WB > "$work/records.ndjson"
start_sandbox main "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --preload "$work/ehr-patients.ndjson"
records=$((patients * 3))
calc() { node -e "console.log(($1).toFixed(3))"; }
stat_of() { ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }

run_mode() {  # run_mode MODE PROFILE -> "seconds requests"
  local mode=$1 profile=$2 d=$work/$1-$2
  mkdir -p "$d"
  cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "write_mode": "$mode", "patient": "match" },
  "log": { "path": "sync.log" } }
JSON
  ctl reset
  ctl profile "$profile"
  "$bin" ingest --config "$d/connector.jsonc" "$work/records.ndjson" > /dev/null
  local before; before=$(stat_of s.requests)
  local start; start=$(date +%s.%N)
  "$bin" sync --once --config "$d/connector.jsonc" > "$d/sync.out" 2>&1 || { cat "$d/sync.out"; exit 1; }
  local end; end=$(date +%s.%N)
  echo "$(calc "$end - $start") $(( $(stat_of s.requests) - before ))"
}

printf '%-12s %-8s %10s %14s %10s\n' mode profile records/s requests/rec vs-transaction
base_rate=""
for pair in transaction:full batch:batch single:single single:full; do
  mode=${pair%%:*}; profile=${pair##*:}
  read -r seconds requests < <(run_mode "$mode" "$profile")
  rate=$(calc "$records / $seconds")
  [ -n "$base_rate" ] || base_rate=$rate
  printf '%-12s %-8s %10.1f %14.1f %10.2f\n' "$mode" "$profile" "$rate" \
    "$(calc "$requests / $records")" "$(calc "$rate / $base_rate")"
done
echo "($records records of $patients patients, 2 connections, sync --once each; requests include the /metadata read)"
