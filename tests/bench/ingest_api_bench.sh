#!/usr/bin/env bash
# Ingest API benchmark: prints figures, never fails on timing.
#  - records/s acknowledged durably (202 after the SQLite commit, synchronous=FULL) and request
#    latency percentiles, for one record per request and for NDJSON batches, over mutual TLS
#    with a bearer token, keep-alive connections;
#  - against, in the same run: `migraine-connector ingest` of the same records (the command
#    line, one transaction per file), and the same load generator against a Node HTTPS server that
#    answers 202 without storing anything (what the client and TLS alone cost).
# The daemon's EHR is unreachable on purpose, so delivery does not compete for the store.
# Usage: tests/bench/ingest_api_bench.sh BUILD_BIN_DIR [RECORDS_PER_RUN]
set -euo pipefail
bin=$1/migraine-connector
n=${2:-3000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
daemon=""
trap '[ -n "$daemon" ] && kill "$daemon"; [ -n "${noop:-}" ] && kill "$noop"; rm -rf "$work"' EXIT
certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null
patients=$((n / 3))
for run in single batch cli; do
  node "$root/tests/integration/make-records.mjs" --patients "$patients" --prefix "$run" > "$work/$run.ndjson"
done
echo "secret-bench-token" > "$work/token"
cat > "$work/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "https://127.0.0.1:9/fhir", "ca_file": "$certs/ca.pem" },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "token", "client_ca_file": "$certs/ca.pem",
                  "cert_file": "$certs/server.pem", "key_file": "$certs/server.key" } }
JSON
"$bin" run --config "$work/connector.jsonc" > /dev/null 2> "$work/run.err" &
daemon=$!
for _ in $(seq 100); do grep -q "ingest API on" "$work/run.err" && break; sleep 0.1; done
url=$(sed -n 's|.*ingest API on \(https://[^ ]*/v1/records\).*|\1|p' "$work/run.err" | head -1)
url=${url/127.0.0.1/localhost}
load() { node "$root/tests/bench/ingest_api_load.mjs" "$1" "$2" --ca "$certs/ca.pem" --cert "$certs/client.pem" \
  --key "$certs/client.key" --token secret-bench-token --batch "$3" --concurrency "$4"; }
single=$(load "$url" "$work/single.ndjson" 1 8)
batch=$(load "$url" "$work/batch.ndjson" 100 2)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=""

cat > "$work/cli.jsonc" <<JSON
{ "store": { "path": "cli.db" } }
JSON
start=$(date +%s%N)
"$bin" ingest --config "$work/cli.jsonc" "$work/cli.ndjson" > /dev/null
cli_s=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')

# What the client and TLS alone cost: a server that stores nothing.
node -e "
  const https = require('https'), fs = require('fs');
  const s = https.createServer({ cert: fs.readFileSync('$certs/server.pem'), key: fs.readFileSync('$certs/server.key') },
    (req, res) => { req.resume(); req.on('end', () => res.writeHead(202, {'content-type': 'application/json'}).end('{}')); });
  s.listen(0, '127.0.0.1', () => console.log(s.address().port));" > "$work/noop.port" &
noop=$!
for _ in $(seq 100); do [ -s "$work/noop.port" ] && break; sleep 0.1; done
noop_single=$(load "https://localhost:$(cat "$work/noop.port")/v1/records" "$work/single.ndjson" 1 8)

field() { node -e "console.log(JSON.parse(process.argv[1]).$2)" "$1"; }
cli_rps=$(awk -v n="$n" -v s="$cli_s" 'BEGIN { printf "%.1f", n / s }')
echo "Ingest API benchmark: $n records per run, mutual TLS + bearer token, synchronous=FULL"
printf '  %-44s %9s %9s %9s %9s\n' "" "records/s" "p50 ms" "p95 ms" "p99 ms"
row() { printf '  %-44s %9s %9s %9s %9s\n' "$1" "$(field "$2" records_per_s)" "$(field "$2" p50_ms)" "$(field "$2" p95_ms)" "$(field "$2" p99_ms)"; }
row "API, 1 record per request, 8 connections" "$single"
row "API, NDJSON 100 per request, 2 connections" "$batch"
row "no-op Node server, 1 per request, 8 conn." "$noop_single"
printf '  %-44s %9s\n' "CLI ingest of one NDJSON file (baseline)" "$cli_rps"
echo "  ratios: API batched / CLI $(awk -v a="$(field "$batch" records_per_s)" -v b="$cli_rps" 'BEGIN { printf "%.2f", a / b }')," \
     "API single / no-op server $(awk -v a="$(field "$single" records_per_s)" -v b="$(field "$noop_single" records_per_s)" 'BEGIN { printf "%.2f", a / b }')"
echo "  daemon peak resident memory: $((rss_kb / 1024)) MB"
