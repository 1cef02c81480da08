#!/usr/bin/env bash
# The connector authenticating to the EHR sandbox's token endpoint, over mutual TLS as well:
# SMART Backend Services with RS384 and ES384 keys (token URL discovered), client_secret_basic,
# a bearer token file; tokens expiring every few seconds through a run of 150 records; a revoked
# token; a refused client (auth fault, one alert, no dead letter, recovery by itself); the token
# endpoint down; and no token, secret or assertion anywhere IT staff can look.
# Prints "N passed, M failed". Waits poll with a deadline.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null || exit 1
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rs.pem" 2> /dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/es.pem" 2> /dev/null
chmod 600 "$work/rs.pem" "$work/es.pem"
printf 'secret-%s%s-value\n' "$RANDOM" "$RANDOM" > "$work/client.secret"
printf 'static-token-%s%s\n' "$RANDOM" "$RANDOM" > "$work/static.token"
cp "$work/static.token" "$work/sandbox-static.tokens"

# config NAME AUTH_JSON [EXTRA_JSON]: a configuration with its own store (base filled in later).
config() {
  mkdir -p "$work/$1"
  cat > "$work/$1/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "BASE", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10, "auth": $2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 2000 }${3:-} }
JSON
  echo "$work/$1/connector.jsonc"
}
rs=$(config rs '{ "kind": "smart_backend", "client_id": "rs-client", "private_key_file": "'"$work"'/rs.pem",
                  "algorithm": "RS384", "key_id": "rs-1", "scope": "system/*.write" }')
es=$(config es '{ "kind": "smart_backend", "client_id": "es-client", "private_key_file": "'"$work"'/es.pem",
                  "algorithm": "ES384", "key_id": "es-1", "scope": "system/Patient.cu system/Procedure.cu" }')
sec=$(config secret '{ "kind": "client_secret_basic", "client_id": "secret-client",
                       "client_secret_file": "'"$work"'/client.secret", "scope": "system/*.write" }')
bearer=$(config bearer '{ "kind": "bearer_file", "token_file": "'"$work"'/static.token" }')

"$bin" jwks --config "$rs" > "$work/rs.jwks"
"$bin" jwks --config "$es" > "$work/es.jwks"
check "jwks: the RSA key's public JWK" node -e "const k=JSON.parse(require('fs').readFileSync('$work/rs.jwks','utf8')).keys[0];
  if (k.kty!=='RSA'||k.kid!=='rs-1'||k.alg!=='RS384'||!k.n||k.d) process.exit(1)"
check "jwks: the EC key's public JWK" node -e "const k=JSON.parse(require('fs').readFileSync('$work/es.jwks','utf8')).keys[0];
  if (k.kty!=='EC'||k.crv!=='P-384'||k.kid!=='es-1'||k.alg!=='ES384'||!k.x||!k.y||k.d) process.exit(1)"

start_sandbox ehr "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --smart-client "rs-client=$work/rs.jwks" --smart-client "es-client=$work/es.jwks" \
  --secret-client "secret-client=$work/client.secret" --static-token-file "$work/sandbox-static.tokens" \
  --token-lifetime 3 || exit 1
sed -i "s|\"BASE\"|\"$BASE_ehr\"|" "$rs" "$es" "$sec" "$bearer"
ctl() { SANDBOX_TOKEN=$(head -1 "$work/sandbox-static.tokens") node "$root/tests/integration/sandbox-ctl.mjs" "$BASE_ehr" "$certs" "$@"; }
stat_of() { ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }
sync_once() { "$bin" sync --once --config "$1" > "$work/sync.out" 2> "$work/sync.err"; rc=$?; }
sync_until_done() { for _ in $(seq 1 "$2"); do sync_once "$1"; [ "$rc" -eq 0 ] && return 0; done; return 1; }
patients() {  # patients FROM TO TAG: a consultation for each of those patients
  for i in $(seq "$1" "$2"); do
    sed "s/MRN-100234/MRN-$3-$i/; s/CONS-2026-0001/CONS-$3-$i/" "$root/mappings/examples/consultation.json" | tr -d '\n'
    echo
  done
}
dead_count() { "$bin" status --config "$1" | sed -n 's/.* dead \([0-9]*\) .*/\1/p'; }

# config-check: the key, discovery and a real token request, never the token.
"$bin" config-check --config "$rs" > "$work/check.out" 2>&1
check "config-check: the key fits its algorithm" grep -q "^ok     ehr.auth.private_key_file: RSA 2048 bits, fits RS384" "$work/check.out"
check "config-check: a token from the discovered endpoint, with its scope" \
  grep -q "^ok     ehr.auth: token issued from https://localhost:[0-9]*/auth/token (smart_backend; scope \"system/\*.write\" granted; lives [23] s)" "$work/check.out"
wrong=$(config wrong-kid '{ "kind": "smart_backend", "client_id": "rs-client", "private_key_file": "'"$work"'/rs.pem",
                  "algorithm": "RS384", "key_id": "not-registered", "scope": "system/*.write" }')
sed -i "s|\"BASE\"|\"$BASE_ehr\"|" "$wrong"
"$bin" config-check --config "$wrong" > "$work/check-wrong.out" 2>&1
check "config-check: a refused assertion is a problem, with the endpoint's error code" \
  grep -q "^ERROR  ehr.auth: no token from https://.*: token endpoint refused: invalid_client (HTTP 400)" "$work/check-wrong.out"
cat "$work/check.out" "$work/check-wrong.out" > "$work/checks.out"

# Without a token the EHR refuses: the sandbox enforces what a real EHR does.
check "a FHIR request without a token gets 401" [ "$(node "$root/tests/integration/https-request.mjs" GET "$BASE_ehr/Patient" \
  --ca "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key" | head -1)" = 401 ]

# SMART, RS384, token URL discovered: 150 records while tokens last 3 s.
patients 1 150 rs > "$work/rs.ndjson"
"$bin" ingest --config "$rs" "$work/rs.ndjson" > /dev/null
before=$(stat_of s.tokenRequests)
start=$SECONDS
sync_until_done "$rs" 3
elapsed=$((SECONDS - start + 1))
requests=$(( $(stat_of s.tokenRequests) - before ))
check "RS384: 150 records delivered" [ "$rc" -eq 0 ]
check "RS384: 150 patients at the EHR" [ "$(ctl count Patient)" -eq 150 ]
check "RS384: no dead letter" [ "$(dead_count "$rs")" = 0 ]
# One token per 80% of its 3 s life, plus the first: never one per record.
check "RS384: token requests near the minimum ($requests in ${elapsed} s)" \
  [ "$requests" -ge 1 -a "$requests" -le $((elapsed * 10 / 24 + 2)) ]
echo "# RS384: $requests token requests for 150 records in about ${elapsed} s (tokens live 3 s)"

# ES384 and client_secret_basic.
patients 1 5 es > "$work/es.ndjson"
"$bin" ingest --config "$es" "$work/es.ndjson" > /dev/null
sync_until_done "$es" 3
check "ES384: delivered" [ "$rc" -eq 0 ]
patients 1 5 sec > "$work/sec.ndjson"
"$bin" ingest --config "$sec" "$work/sec.ndjson" > /dev/null
sync_until_done "$sec" 3
check "client_secret_basic: delivered" [ "$rc" -eq 0 ]

# Without mutual TLS: a sandbox that asks for no client certificate, the token alone.
start_sandbox open "$certs/server.pem" "$certs/server.key" --smart-client "es-client=$work/es.jwks" || exit 1
nomtls=$(config no-mtls '{ "kind": "smart_backend", "client_id": "es-client", "private_key_file": "'"$work"'/es.pem",
                  "algorithm": "ES384", "key_id": "es-1", "scope": "system/*.write" }')
sed -i "s|\"BASE\"|\"$BASE_open\"|; s|, \"client_cert_file\": \"[^\"]*\",|,|; s|\"client_key_file\": \"[^\"]*\", ||" "$nomtls"
check "no mTLS: the configuration has no client certificate" eval '! grep -q client_cert_file "$nomtls"'
"$bin" ingest --config "$nomtls" "$work/es.ndjson" > /dev/null
sync_until_done "$nomtls" 3
check "no mTLS: ES384 token alone, delivered" [ "$rc" -eq 0 ]

# bearer_file: the token a gateway renews in a file; a new one is picked up without a restart.
patients 1 3 bearer > "$work/bearer.ndjson"
"$bin" ingest --config "$bearer" "$work/bearer.ndjson" > /dev/null
sync_until_done "$bearer" 3
check "bearer_file: delivered" [ "$rc" -eq 0 ]
printf 'rotated-token-%s%s\n' "$RANDOM" "$RANDOM" > "$work/rotated.token"
cp "$work/rotated.token" "$work/sandbox-static.tokens"
cp "$work/rotated.token" "$work/static.token"
patients 4 6 bearer > "$work/bearer2.ndjson"
"$bin" ingest --config "$bearer" "$work/bearer2.ndjson" > /dev/null
sync_until_done "$bearer" 3
check "bearer_file: the rotated token is used" [ "$rc" -eq 0 ]

# The token endpoint down: retried like an unreachable EHR, nothing dead-lettered.
ctl auth '{"down": true}'
patients 1 2 down > "$work/down.ndjson"
"$bin" ingest --config "$sec" "$work/down.ndjson" > /dev/null
sync_once "$sec"
check "token endpoint down: records wait (exit 3)" [ "$rc" -eq 3 ]
"$bin" status --config "$sec" > "$work/status.out"
check "token endpoint down: status says so" grep -q "last error: token endpoint" "$work/status.out"
check "token endpoint down: no dead letter" [ "$(dead_count "$sec")" = 0 ]
ctl auth '{"down": false}'
sync_until_done "$sec" 3
check "token endpoint back: delivered" [ "$rc" -eq 0 ]

# The daemon: a revoked token, then a refused client and its recovery.
daemon_config=$(config daemon '{ "kind": "smart_backend", "client_id": "es-client", "private_key_file": "'"$work"'/es.pem",
                  "algorithm": "ES384", "key_id": "es-1", "scope": "system/*.write" }' \
  ', "admin": { "listen": "127.0.0.1:0" }, "inbox": { "dir": "inbox", "poll_ms": 100 }, "log": { "path": "sync-log.jsonl" },
   "alerts": { }')
sed -i "s|\"BASE\"|\"$BASE_ehr\"|" "$daemon_config"
mkdir -p "$work/daemon/inbox"
ctl auth '{"tokenLifetime": 300}'
"$bin" run --config "$daemon_config" > "$work/run.out" 2> "$work/run.err" &
daemon=$!
wait_for 20 grep -q "admin API on" "$work/run.err" || { cat "$work/run.err"; exit 1; }
admin=$(sed -n 's|.*admin API on \(http://[^ ]*\)/$|\1|p' "$work/run.err" | head -1)
get() { node "$root/tests/integration/https-request.mjs" GET "$admin$1"; }
json_of() { get "$1" | node -e "const t=require('fs').readFileSync(0,'utf8'); const j=JSON.parse(t.slice(t.indexOf('\n')+1)); console.log($2)"; }
settled() { [ "$(json_of /api/status 'j.records.pending+j.records.in_flight+j.records.retry_scheduled')" = 0 ]; }
drop() { patients "$1" "$2" "$3" > "$work/daemon/inbox/.$3.tmp" && mv "$work/daemon/inbox/.$3.tmp" "$work/daemon/inbox/$3.ndjson"; }

drop 1 5 d1
check "daemon: delivered with a token" wait_for 30 settled
check "daemon: the status page's API names the auth kind" [ "$(json_of /api/status 'j.auth.kind')" = smart_backend ]
requests=$(stat_of s.tokenRequests); unauthorized=$(stat_of s.unauthorized)
ctl auth '{"revoke": true}'
drop 6 10 d2
check "revoked token: delivered after it" wait_for 30 settled
refused=$(( $(stat_of s.unauthorized) - unauthorized ))
# Each request already out with the revoked token gets its 401: at most one per connection.
check "revoked token: a 401 per request in flight, no more ($refused)" [ "$refused" -ge 1 -a "$refused" -le 2 ]
check "revoked token: one new token" [ $(( $(stat_of s.tokenRequests) - requests )) -eq 1 ]
check "revoked token: no dead letter" [ "$(json_of /api/status 'j.records.dead')" = 0 ]

ctl auth '{"revoke": true, "refuse": "invalid_client"}'
drop 11 13 d3
alert_open() { grep -q '"event":"alert_opened".*ehr_refuses_credentials' "$work/daemon/sync-log.jsonl"; }
check "refused client: the ehr_refuses_credentials alert opens" wait_for 30 alert_open
check "refused client: the status names the cause" \
  [ "$(json_of /api/status 'j.ehr.detail')" = "no token: token endpoint refused: invalid_client (HTTP 400)" ]
check "refused client: the last token error is shown" \
  [ "$(json_of /api/status 'j.auth.last_error')" = "token endpoint refused: invalid_client (HTTP 400)" ]
check "refused client: nothing dead-lettered" [ "$(json_of /api/status 'j.records.dead')" = 0 ]
check "refused client: the records wait" [ "$(json_of /api/status 'j.records.pending+j.records.retry_scheduled')" -ge 1 ]
sleep 3  # the pause doubles while refused: a few rounds of asking
refusals=$(stat_of s.tokenRefusals)
check "refused client: asked again, but not per record ($refusals refusals)" [ "$refusals" -ge 2 -a "$refusals" -le 8 ]
ctl auth '{"refuse": null}'
check "registration fixed: delivered by itself" wait_for 90 settled
alert_closed() { grep -q '"event":"alert_closed".*ehr_refuses_credentials' "$work/daemon/sync-log.jsonl"; }
check "registration fixed: the alert closes" wait_for 30 alert_closed
check "one alert for the incident" [ "$(grep -c '"event":"alert_opened".*ehr_refuses_credentials' "$work/daemon/sync-log.jsonl")" -eq 1 ]

# The signing key rotated in place (same kid): the EHR's registration takes the new public key
# first, so tokens are refused until SIGHUP makes the daemon sign with the new private key.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/es2.pem" 2> /dev/null
chmod 600 "$work/es2.pem"
cp "$work/es.pem" "$work/es1.pem"
es2=$(config es2 '{ "kind": "smart_backend", "client_id": "es-client", "private_key_file": "'"$work"'/es2.pem",
                    "algorithm": "ES384", "key_id": "es-1", "scope": "system/*.write" }')
"$bin" jwks --config "$es2" > "$work/es2.jwks"
cp "$work/es2.jwks" "$work/es.jwks"
ctl auth '{"revoke": true}'
drop 14 16 d4
refused_again() { [ "$(json_of /api/status 'j.auth.last_error')" = "token endpoint refused: invalid_client (HTTP 400)" ]; }
check "new key registered at the EHR: the old key's assertions are refused" wait_for 30 refused_again
echo "not a key" > "$work/es.pem"
kill -HUP "$daemon"
check "SIGHUP with a broken key file: refused, the key in use stays" wait_for 10 grep -q \
  "reload: ehr.auth: setting ehr.auth.private_key_file: .*no unencrypted PEM private key.*the files in use stay in use" "$work/run.err"
cp "$work/es2.pem" "$work/es.pem"
kill -HUP "$daemon"
check "SIGHUP with the new key: read again" wait_for 10 grep -q "reload: ehr.auth: read again" "$work/run.err"
check "new key: delivered by itself, without a restart" wait_for 90 settled
check "new key: nothing dead-lettered" [ "$(json_of /api/status 'j.records.dead')" = 0 ]
check "new key: the daemon is the one started before" kill -0 "$daemon"
get /metrics > "$work/metrics.out"
check "metrics: token requests counted" grep -Eq '^migraine_token_requests_total [1-9]' "$work/metrics.out"
check "metrics: token failures counted" grep -Eq '^migraine_token_failures_total [1-9]' "$work/metrics.out"
get /api/status > "$work/api-status.out"
kill -TERM "$daemon"; wait "$daemon"; daemon=

# No token, secret or assertion where IT staff can look: logs, stderr, metrics, the API, the store.
for s in rs es secret bearer daemon; do sqlite3 "$work/$s/outbox.db" .dump; done > "$work/stores.dump" 2>&1
cat "$work"/*/sync-log.jsonl* "$work/run.err" "$work/sync.err" "$work/metrics.out" "$work/api-status.out" "$work/checks.out" \
  "$work/stores.dump" > "$work/everything.txt"
leaks() {
  grep -F -e "$(head -1 "$work/client.secret")" -e "$(head -1 "$work/rotated.token")" \
    -e "$(grep -v '^-' "$work/es1.pem" | head -1)" -e "$(grep -v '^-' "$work/es2.pem" | head -1)" -e "$(grep -v '^-' "$work/rs.pem" | head -1)" "$work/everything.txt" ||
  grep -E 'eyJ[A-Za-z0-9_-]{10,}\.|access_token|client_assertion|Bearer [A-Za-z0-9]' "$work/everything.txt"
}
check "no secret, token or assertion in logs, stderr, metrics, API or store" eval '! leaks'
check "the leak scan would see a secret" grep -q "secret-" "$work/client.secret"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
