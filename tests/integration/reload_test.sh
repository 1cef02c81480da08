#!/usr/bin/env bash
# SIGHUP: files read again under the running daemon, without a restart. The ingest API's server
# certificate and the EHR client certificate are replaced while records keep arriving; after
# SIGHUP new connections present the new certificate, delivery goes on with the new client
# certificate, no record is dropped. Then the ingest token is rotated, and the code tables are
# edited: records taken from then on are mapped with the new text. A broken file is refused and
# the one in use stays.
# Prints "N passed, M failed". Nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap '[ -n "$daemon" ] && kill "$daemon" 2>/dev/null; [ -n "${poster:-}" ] && kill "$poster" 2>/dev/null; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
live=$work/live
mkdir -p "$live"
cp "$certs/server.pem" "$certs/server.key" "$certs/client.pem" "$certs/client.key" "$live/"
# issue NAME USAGE: a new certificate from the development CA for localhost (a rotation).
issue() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$1.key" -subj "/CN=rotated $1" \
    -out "$work/$1.csr" 2> /dev/null
  openssl x509 -req -in "$work/$1.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial -days 30 \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\n' "$2") \
    -out "$work/$1.pem" 2> /dev/null
}
fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
served() {  # the fingerprint of the certificate the ingest API presents to a new connection
  openssl s_client -connect "127.0.0.1:$port" -servername localhost -cert "$certs/client.pem" -key "$certs/client.key" \
    < /dev/null 2> /dev/null | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2
}

printf 'ingest-%s-%s\n' "$RANDOM" "$RANDOM" > "$work/ingest.token"
cp "$root/mappings/code-tables.json" "$work/code-tables.json"
config=$work/connector.jsonc
cat > "$config" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$live/client.pem",
           "client_key_file": "$live/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 },
  "mapping": { "code_tables": "code-tables.json" },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token", "client_ca_file": "$certs/ca.pem",
                  "cert_file": "$live/server.pem", "key_file": "$live/server.key" } }
JSON
start_daemon "$config"
port=$(node -e "console.log(new URL('$api').port)")
post() {
  node "$root/tests/integration/https-request.mjs" POST "$api" --ca "$certs/ca.pem" --cert "$certs/client.pem" \
    --key "$certs/client.key" --token "$(head -1 "$work/ingest.token")" --type application/x-ndjson --body-file "$1" | head -1
}
delivered() { "$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; process.exit(r.delivered === $1 && !r.pending && !r.in_flight && !r.retry_scheduled ? 0 : 1)"; }

check "before: the API presents the original certificate" [ "$(served)" = "$(fingerprint "$certs/server.pem")" ]
# Records keep arriving, one batch after another, while the certificates are rotated.
for i in $(seq 1 12); do node "$root/tests/integration/make-records.mjs" --patients 2 --prefix "R$i" --kinds c > "$work/b$i.ndjson"; done
( for i in $(seq 1 12); do post "$work/b$i.ndjson" >> "$work/answers"; done ) &
poster=$!
wait_for 30 test -s "$work/answers"

issue server serverAuth
issue client clientAuth
cp "$work/server.pem" "$live/server.pem"; cp "$work/server.key" "$live/server.key"
cp "$work/client.pem" "$live/client.pem"; cp "$work/client.key" "$live/client.key"
kill -HUP "$daemon"
check "SIGHUP: the reload is reported" wait_for 10 grep -q "reload done (all read)" "$work/run.err"
check "after: new connections get the rotated server certificate" [ "$(served)" = "$(fingerprint "$work/server.pem")" ]
wait "$poster"; poster=""
check "every batch posted across the reload was taken (12 x 202)" [ "$(grep -c '^202$' "$work/answers")" -eq 12 ]
check "the daemon kept running" kill -0 "$daemon"
node "$root/tests/integration/make-records.mjs" --patients 2 --prefix AFTER --kinds c > "$work/after.ndjson"
check "a batch after the rotation is taken" [ "$(post "$work/after.ndjson")" = 202 ]
check "everything is delivered, with the rotated client certificate for the new connections" wait_for 60 delivered 26

# A broken file is refused; the certificate in use stays in use.
echo "not a certificate" > "$live/server.pem"
kill -HUP "$daemon"
check "a broken certificate: the reload says which and keeps the old one" \
  wait_for 10 grep -q "reload: ingest_api: setting ingest_api.cert_file: cannot load .*the files in use stay in use" "$work/run.err"
check "... the API still presents the rotated certificate" [ "$(served)" = "$(fingerprint "$work/server.pem")" ]
check "... and still takes records" [ "$(post "$work/after.ndjson")" = 202 ]

# The ingest API's token rotated: from the next request on only the new one is taken (the broken
# certificate file is still there: refused again, which does not stop the token's reload).
old_token=$(head -1 "$work/ingest.token")
printf 'rotated-%s-%s\n' "$RANDOM" "$RANDOM" > "$work/ingest.token"
kill -HUP "$daemon"
third_reload() { [ "$(grep -c "reload: ingest_api.token_file: read again" "$work/run.err")" -ge 3 ]; }
check "SIGHUP: the token file is read again" wait_for 10 third_reload
check "... the new token is taken" [ "$(post "$work/after.ndjson")" = 202 ]
check "... the old one is refused" [ "$(node "$root/tests/integration/https-request.mjs" POST "$api" --ca "$certs/ca.pem" \
  --cert "$certs/client.pem" --key "$certs/client.key" --token "$old_token" --type application/x-ndjson \
  --body-file "$work/after.ndjson" | head -1)" = 401 ]
check "the EHR holds each record once" [ "$(ctl count Encounter)" -eq 26 ]

# The code tables edited as a terminologist would: the consultation's encounter type gets a new
# text. Records taken after SIGHUP carry it; the ones delivered before keep theirs.
encounters_with() { ctl get "Encounter?_count=500" | node -e "
  const b=JSON.parse(require('fs').readFileSync(0,'utf8'));
  console.log((b.entry||[]).filter(e => (e.resource.type||[]).some(t => t.text === process.argv[1])).length)" "$1"; }
new_text="Chronic migraine consultation (tables of $(date +%F))"
sed "s/\"text\": \"Chronic migraine consultation\"/\"text\": \"$new_text\"/" "$root/mappings/code-tables.json" > "$work/tables.new"
check "the edit changes the tables" grep -qF "$new_text" "$work/tables.new"
mv "$work/tables.new" "$work/code-tables.json"
kill -HUP "$daemon"
check "SIGHUP: the code tables are read again" wait_for 10 grep -q "reload: mapping.code_tables: read again" "$work/run.err"
node "$root/tests/integration/make-records.mjs" --patients 2 --prefix TABLES --kinds c > "$work/tables.ndjson"
check "a batch after the edit is taken" [ "$(post "$work/tables.ndjson")" = 202 ]
check "... and delivered" wait_for 60 delivered 28
check "... with the new text (2 encounters)" [ "$(encounters_with "$new_text")" -eq 2 ]
check "... the earlier ones keep the old text (26)" [ "$(encounters_with "Chronic migraine consultation")" -eq 26 ]
# A botched edit: refused, naming the setting; the tables in use stay in use.
echo '{ "concepts": ' > "$work/code-tables.json"
kill -HUP "$daemon"
check "broken tables: refused, the ones in use stay" \
  wait_for 10 grep -q "reload: mapping.code_tables: .*code-tables.json.*the files in use stay in use" "$work/run.err"
node "$root/tests/integration/make-records.mjs" --patients 1 --prefix TABLES2 --kinds c > "$work/tables2.ndjson"
check "... records are still taken" [ "$(post "$work/tables2.ndjson")" = 202 ]
check "... and delivered with the tables in use" wait_for 60 delivered 29
check "... which are the edited ones (3 encounters)" [ "$(encounters_with "$new_text")" -eq 3 ]
check "the daemon kept running through every reload" kill -0 "$daemon"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
