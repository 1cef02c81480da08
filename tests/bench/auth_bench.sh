#!/usr/bin/env bash
# Authentication benchmark: prints figures, never fails on timing.
#  - delivery throughput (ingest + sync --once) with each ehr.auth kind against the same records
#    without auth (mutual TLS only), same run, same sandbox build: the cost of auth as a ratio;
#  - requests per token over the run, with tokens living TOKEN_SECONDS (renewed at 80%).
# Usage: tests/bench/auth_bench.sh BUILD_BIN_DIR [PATIENTS] [TOKEN_SECONDS]
set -euo pipefail
bin=$1/migraine-connector
patients=${2:-60}
lifetime=${3:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT
certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rs.pem" 2> /dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/es.pem" 2> /dev/null
echo "bench-secret-$RANDOM" > "$work/secret"
echo "bench-static-$RANDOM$RANDOM" > "$work/static.token"

node - "$root/mappings/examples" "$patients" > "$work/records.ndjson" <<'JS'
const fs = require('fs');
const [dir, n] = [process.argv[2], Number(process.argv[3])];
const load = (k) => JSON.parse(fs.readFileSync(`${dir}/${k}.json`, 'utf8'));
for (let i = 0; i < n; i++) {
  const c = load('consultation'), p = load('procedure'), f = load('follow_up');
  c.record_id = `C-${i}`; p.record_id = `P-${i}`; f.record_id = `F-${i}`;
  p.consultation_record_id = c.record_id; f.procedure_record_id = p.record_id;
  for (const r of [c, p, f]) { r.patient.mrn = `MRN-A${i}`; console.log(JSON.stringify(r)); }
}
JS
records=$((patients * 3))

config() {  # config NAME BASE AUTH_JSON
  mkdir -p "$work/$1"
  cat > "$work/$1/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$2", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2${3:+, \"auth\": $3} } }
JSON
  echo "$work/$1/connector.jsonc"
}
probe=$(config probe https://localhost:1/fhir '{ "kind": "smart_backend", "client_id": "rs", "private_key_file": "'"$work"'/rs.pem", "algorithm": "RS384", "key_id": "rs-1", "scope": "system/*.write" }')
"$bin" jwks --config "$probe" > "$work/rs.jwks"
probe=$(config probe-es https://localhost:1/fhir '{ "kind": "smart_backend", "client_id": "es", "private_key_file": "'"$work"'/es.pem", "algorithm": "ES384", "key_id": "es-1", "scope": "system/*.write" }')
"$bin" jwks --config "$probe" > "$work/es.jwks"

start_sandbox plain "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert
start_sandbox auth "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --smart-client "rs=$work/rs.jwks" --smart-client "es=$work/es.jwks" --secret-client "sec=$work/secret" \
  --static-token-file "$work/static.token" --token-lifetime "$lifetime"
stats() { node "$root/tests/integration/sandbox-ctl.mjs" "$1" "$certs" stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($2)"; }
reset() { node "$root/tests/integration/sandbox-ctl.mjs" "$1" "$certs" reset; }

run() {  # run NAME BASE AUTH_JSON: seconds for ingest + sync --once of every record
  local c
  c=$(config "$1-$RANDOM" "$2" "${3:-}")
  reset "$2"
  local start end
  start=$(date +%s.%N)
  "$bin" ingest --config "$c" "$work/records.ndjson" > /dev/null
  "$bin" sync --once --config "$c" > /dev/null
  end=$(date +%s.%N)
  awk "BEGIN { print $end - $start }"
}
rs_auth='{ "kind": "smart_backend", "client_id": "rs", "private_key_file": "'"$work"'/rs.pem", "algorithm": "RS384", "key_id": "rs-1", "scope": "system/*.write" }'
es_auth='{ "kind": "smart_backend", "client_id": "es", "private_key_file": "'"$work"'/es.pem", "algorithm": "ES384", "key_id": "es-1", "scope": "system/*.write" }'
sec_auth='{ "kind": "client_secret_basic", "client_id": "sec", "client_secret_file": "'"$work"'/secret", "scope": "system/*.write" }'
file_auth='{ "kind": "bearer_file", "token_file": "'"$work"'/static.token" }'

echo "auth benchmark: $records records of $patients patients, 2 connections, mutual TLS, tokens live ${lifetime} s"
none=$(run none "$BASE_plain")
printf "  %-34s %6.2f s  %6.1f records/s\n" "mutual TLS only (baseline)" "$none" "$(awk "BEGIN { print $records / $none }")"
for kind in rs es sec file; do
  auth_var=${kind}_auth
  s=$(run "$kind" "$BASE_auth" "${!auth_var}")
  tokens=$(stats "$BASE_auth" s.tokenRequests)
  label=$(case $kind in rs) echo "smart_backend RS384";; es) echo "smart_backend ES384";; sec) echo "client_secret_basic";; file) echo "bearer_file";; esac)
  per=$([ "$tokens" -gt 0 ] && awk "BEGIN { printf \"%.0f\", $records / $tokens }" || echo "-")
  printf "  %-34s %6.2f s  %6.1f records/s  ratio %.2f  token requests %s (%s records per token)\n" \
    "$label" "$s" "$(awk "BEGIN { print $records / $s }")" "$(awk "BEGIN { print $none / $s }")" "$tokens" "$per"
done
