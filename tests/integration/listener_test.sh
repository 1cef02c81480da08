#!/usr/bin/env bash
# The daemon's two listeners under unauthenticated floods, after Beast's advanced server: the short
# pre-request timeouts, the per-address cap and the eviction of connections that have not passed
# authentication, so that an authenticated client is still served while the flood goes on.
# Prints "N passed, M failed". Waits poll with a deadline; nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
ulimit -n 8192 2> /dev/null || true  # the flood's sockets, and the daemon's

start_main_sandbox || exit 1
d=$work/clinic
mkdir -p "$d"
printf 'ingest-%s-%s\n' "$RANDOM" "$RANDOM" > "$d/ingest.token"
cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token", "client_ca_file": "$certs/ca.pem",
                  "cert_file": "$certs/server.pem", "key_file": "$certs/server.key" },
  "admin": { "listen": "127.0.0.1:0" } }
JSON
start_daemon "$d/connector.jsonc"
token=$(head -1 "$d/ingest.token")
metric() {  # metric NAME{LABELS}: its value in /metrics
  node "$root/tests/integration/https-request.mjs" GET "$admin/metrics" | grep -F "$1 " | awk '{print $2}'
}
field() { node -e "const j=JSON.parse(require('fs').readFileSync('$1','utf8')); console.log(JSON.stringify($2))"; }
sed "s/MRN-100234/MRN-FLOOD-1/; s/CONS-2026-0001/CONS-FLOOD-1/" "$root/mappings/examples/consultation.json" | tr -d '\n' > "$work/one.ndjson"

# A connection that sends nothing is closed on the short pre-request timeout, while one whose
# header passed and whose body trickles in keeps the body's longer one.
node "$root/tests/integration/listener-timeouts.mjs" "$admin" /api/records/replay > "$work/timeouts.json"
check "an idle connection is closed before a slow body's connection" [ "$(field "$work/timeouts.json" j.slow_body_open_then)" = true ]
echo "idle connection closed after $(field "$work/timeouts.json" j.idle_closed_after_ms) ms"

# 560 slowloris connections from eight addresses against the admin server (512 slots, 64 per
# address): /healthz from 127.0.0.1, the flood's own first address, is still answered.
node "$root/tests/integration/listener-flood.mjs" "$admin/healthz" --per-address 70 --addresses 8 --slow \
  > "$work/admin-flood.json"
check "slowloris flood on the admin server: /healthz answered every time" \
  [ "$(field "$work/admin-flood.json" j.answers)" = '[200,200,200,200,200]' ]
check "... the flood's connections were evicted to make room" [ "$(metric 'migraine_listener_evicted_total{listener="admin"}')" -gt 0 ]

# 560 TCP connections that never send a ClientHello against the HTTPS ingest API: a client with
# its certificate and token still gets its records stored.
node "$root/tests/integration/listener-flood.mjs" "$api" --per-address 70 --addresses 8 --ca "$certs/ca.pem" \
  --cert "$certs/client.pem" --key "$certs/client.key" --token "$token" --method POST --body-file "$work/one.ndjson" \
  > "$work/api-flood.json"
check "idle TLS flood on the ingest API: the authenticated client's records are taken every time" \
  [ "$(field "$work/api-flood.json" j.answers)" = '[202,202,202,202,202]' ]
check "... the flood held its connections meanwhile (it was not simply refused)" \
  [ "$(field "$work/api-flood.json" j.open_at_end)" -ge 500 ]
check "... and the ingest API evicted some of them" [ "$(metric 'migraine_listener_evicted_total{listener="ingest_api"}')" -gt 0 ]
check "the record reached the store once" [ "$("$bin" status --config "$d/connector.jsonc" --json | node -e "
  const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log(Object.values(s.records).reduce((a,b)=>a+b,0))")" -eq 1 ]
check "after the flood the ingest API's slots are given back" \
  wait_for 30 test "$(metric 'migraine_listener_connections{listener="ingest_api"}')" = 0
check "the daemon is still running" kill -0 "$daemon"
echo "admin flood: $(cat "$work/admin-flood.json")"
echo "ingest API flood: $(cat "$work/api-flood.json")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
