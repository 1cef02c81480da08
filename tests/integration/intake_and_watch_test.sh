#!/usr/bin/env bash
# The daemon as a clinic's IT staff run it: records arrive through the inbox folder and the HTTPS
# ingest API, the EHR sandbox refuses records and goes down and comes back, and staff watch the
# sync log, the metrics, the admin API, the status page (headless Chromium) and the alert webhook.
# The records carry distinctive patient data; at the end none of it may appear in anything staff
# see. Prints "N passed, M failed". Waits poll with a deadline; nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
daemon=""
stop_daemon() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=""; fi
}
trap 'stop_daemon; [ -n "${hook_pid:-}" ] && kill "$hook_pid"; stop_sandboxes; rm -rf "$work"' EXIT

start_main_sandbox || exit 1
records() { node "$root/tests/integration/make-records.mjs" "$@"; }
PHI=(Zebulonquux Ottoline MRNZQX 1931-07-19 ottoline.zq 555-0199)  # as make-records.mjs --phi writes them

# The alert webhook.
node "$root/tests/integration/webhook-receiver.mjs" "$certs/server.pem" "$certs/server.key" "$work/alerts.jsonl" \
  > "$work/hook.out" &
hook_pid=$!
wait_for 10 grep -q ready "$work/hook.out" || { echo "the webhook receiver did not start"; exit 1; }
hook_url=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/hook.out','utf8')).url)")

d=$work/clinic
mkdir -p "$d/inbox"
printf 'ingest-%s-%s\n' "$RANDOM" "$RANDOM" > "$d/ingest.token"
cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000, "max_attempts": 3 },
  "inbox": { "dir": "inbox", "poll_ms": 100 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token", "client_ca_file": "$certs/ca.pem",
                  "cert_file": "$certs/server.pem", "key_file": "$certs/server.key", "max_body_bytes": 65536,
                  "max_records": 300 },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "sync.log", "max_bytes": 20000, "keep_files": 3 },
  "alerts": { "webhook_url": "$hook_url", "ca_file": "$certs/ca.pem", "ehr_unreachable_minutes": 0.02 } }
JSON
config=$d/connector.jsonc
runs=0
# start_daemon [ENV=VALUE...]: starts `run`, waits for its listeners, sets api and admin URLs.
start_daemon() {
  runs=$((runs + 1))
  env "$@" "$bin" run --config "$config" >> "$work/run.out" 2> "$work/run$runs.err" &
  daemon=$!
  wait_for 20 grep -q "status page" "$work/run$runs.err" || { echo "the daemon did not start:"; cat "$work/run$runs.err"; exit 1; }
  api=$(sed -n 's|.*ingest API on \(https://[^ ]*/v1/records\).*|\1|p' "$work/run$runs.err" | head -1)
  admin=$(sed -n 's|.*admin API on \(http://[^ ]*\)/$|\1|p' "$work/run$runs.err" | head -1)
}
token=$(head -1 "$d/ingest.token")
post() {  # post FILE [CONTENT_TYPE] [extra options]: the ingest API with the client certificate and token
  local file=$1 type=${2:-application/x-ndjson}; shift 2 2>/dev/null || shift
  node "$root/tests/integration/https-request.mjs" POST "$api" --ca "$certs/ca.pem" --cert "$certs/client.pem" \
    --key "$certs/client.key" --token "$token" --type "$type" --body-file "$file" "$@"
}
get() { node "$root/tests/integration/https-request.mjs" GET "$admin$1"; }
json_of() {  # json_of PATH EXPRESSION: evaluates EXPRESSION on the admin API's JSON answer `j`
  get "$1" | node -e "const t=require('fs').readFileSync(0,'utf8'); const j=JSON.parse(t.slice(t.indexOf('\n')+1)); console.log($2)"
}
state_count() { json_of /api/status "j.records.$1"; }
settled() { [ "$(json_of /api/status 'j.records.pending+j.records.in_flight+j.records.retry_scheduled')" = 0 ]; }

start_daemon
check "the ingest API listens" [ -n "$api" ]
check "the admin server listens on loopback" [ "${admin#http://127.0.0.1:}" != "$admin" ]
status_of() { get "$1" | head -1; }
check "/healthz answers" [ "$(status_of /healthz)" = 200 ]
check "a request for another Host (DNS rebinding) is refused" \
  [ "$(node "$root/tests/integration/https-request.mjs" GET "$admin/api/status" --host evil.example | head -1)" = 403 ]

# --- The inbox -----------------------------------------------------------------------------
records --patients 2 --prefix INBOX --phi > "$d/inbox/a.ndjson.tmp"   # still being written
records --patients 1 --prefix MARK > "$d/inbox/marker.json.part"
records --patients 1 --prefix MARK --kinds c > "$d/marker.json" && mv "$d/marker.json" "$d/inbox/marker.json"
check "a complete file is taken" wait_for 20 test -f "$d/inbox/processed/marker.json"
check "a file still being written (temporary name) is left alone" test -f "$d/inbox/a.ndjson.tmp"
mv "$d/inbox/a.ndjson.tmp" "$d/inbox/a.ndjson"
check "renamed, it is taken and moved to processed/" wait_for 20 test -f "$d/inbox/processed/a.ndjson"
# One good record and one with a bad dose: the file goes to rejected/ with the errors beside it.
# Its name is made of patient data, as some practice systems do: nothing staff see may repeat it.
b=Zebulonquux_Ottoline_1931-07-19.ndjson
{ records --patients 1 --prefix GOOD --kinds c
  records --patients 1 --prefix BAD --kinds p --phi | node -e "
    const r=JSON.parse(require('fs').readFileSync(0,'utf8')); r.units_discarded=-5; console.log(JSON.stringify(r))"
} > "$d/$b" && mv "$d/$b" "$d/inbox/$b"
check "a file with a rejected record goes to rejected/" wait_for 20 test -f "$d/inbox/rejected/$b"
errors=$d/inbox/rejected/$b.errors.json
check "its errors file names the record" grep -q '"record_id":"BAD-P-0"' "$errors"
check "its errors file names the field" grep -q '"field":"procedure.units_discarded"' "$errors"
check "its errors file gives the line" grep -q '"line":2' "$errors"
logged() { "$bin" log --config "$config" --record "$1" | grep -q " $2 "; }  # logged RECORD EVENT
check "the good record of that file is stored anyway" wait_for 20 logged GOOD-C-0 received
check "its errors file names the file by its handle, as the log does" grep -q '"file":"inbox:[0-9a-f]\{12\}"' "$errors"
cp "$d/inbox/processed/a.ndjson" "$d/a-again.ndjson" && mv "$d/a-again.ndjson" "$d/inbox/a-again.ndjson"
check "a file dropped in again is taken again" wait_for 20 test -f "$d/inbox/processed/a-again.ndjson"
check "... its records reported as duplicates, not lost and not stored twice" bash -c "'$bin' log --config '$config' --record INBOX-C-0 | grep ' received ' | grep -q duplicate"
check "everything from the inbox reaches the EHR" wait_for 60 settled
check "the EHR holds the inbox's consultations" [ "$(ctl count Encounter)" -ge 4 ]

# --- The ingest API ------------------------------------------------------------------------
records --patients 3 --prefix API --phi > "$work/api.ndjson"
request() { node "$root/tests/integration/https-request.mjs" POST "$api" --ca "$certs/ca.pem" --type application/x-ndjson --body-file "$work/api.ndjson" "$@" | head -1; }
check "no token: 401" [ "$(request --cert "$certs/client.pem" --key "$certs/client.key")" = 401 ]
check "wrong token: 401" [ "$(request --cert "$certs/client.pem" --key "$certs/client.key" --token "not-$token")" = 401 ]
refused() { [[ "$(request "$@")" == ERROR* ]]; }  # the TLS handshake failed: no HTTP answer at all
check "no client certificate: refused" refused --token "$token"
check "a client certificate from an unknown CA: refused" refused --cert "$certs/other-client.pem" --key "$certs/other-client.key" --token "$token"
check "none of the refused requests stored a record" [ "$("$bin" log --config "$config" --json | grep -c '"record_id":"API-')" -eq 0 ]
post "$work/api.ndjson" > "$work/api.answer"
check "accepted: 202" [ "$(head -1 "$work/api.answer")" = 202 ]
check "each record's outcome is given" [ "$(grep -o '"status":"accepted"' "$work/api.answer" | wc -l)" -eq 9 ]
post "$work/api.ndjson" > "$work/api.again"
check "a resend is reported as duplicate, not stored twice" [ "$(grep -o '"status":"duplicate"' "$work/api.again" | wc -l)" -eq 9 ]
{ records --patients 1 --prefix APIOK --kinds c
  records --patients 1 --prefix APIBAD --kinds c --phi | node -e "
    const r=JSON.parse(require('fs').readFileSync(0,'utf8')); r.headache_days_per_month=45; console.log(JSON.stringify(r))"
} > "$work/mixed.ndjson"
post "$work/mixed.ndjson" > "$work/mixed.answer"
check "a rejected record: 422" [ "$(head -1 "$work/mixed.answer")" = 422 ]
check "422 names the record and the field" grep -q '"line":2,"record_id":"APIBAD-C-0","status":"rejected","problems":\[{"path":"[a-z_.]*headache_days_per_month"' "$work/mixed.answer"
check "422 still says the good record was accepted" grep -q '"record_id":"APIOK-C-0","revision":1,"status":"accepted"' "$work/mixed.answer"
head -c 70000 /dev/zero | tr '\0' ' ' > "$work/big.json"
check "a body over ingest_api.max_body_bytes: 413" [ "$(post "$work/big.json" application/json | head -1)" = 413 ]
check "... but without a token: 401, before the body is read" [ "$(request --cert "$certs/client.pem" --key "$certs/client.key")" = 401 ]
check "another content type: 415" [ "$(post "$work/api.ndjson" text/plain | head -1)" = 415 ]
# Amplification: more records than ingest_api.max_records is refused whole; a batch of junk gets an
# answer that summarises beyond 100 rejected records instead of growing with them.
for _ in $(seq 1 301); do echo '{}'; done > "$work/too-many.ndjson"
check "more than ingest_api.max_records (300 here): 413, nothing stored" [ "$(post "$work/too-many.ndjson" | head -1)" = 413 ]
head -250 "$work/too-many.ndjson" > "$work/junk.ndjson"
post "$work/junk.ndjson" > "$work/junk.answer"
check "250 junk records: 422" [ "$(head -1 "$work/junk.answer")" = 422 ]
check "... 100 listed, 150 summarised" node -e "
  const t=require('fs').readFileSync('$work/junk.answer','utf8'); const j=JSON.parse(t.slice(t.indexOf('\n')+1));
  if (j.records.length!==100 || j.rejected!==250 || j.rejected_not_listed!==150) process.exit(1)"
check "... the answer stays small (under 64 KiB)" [ "$(wc -c < "$work/junk.answer")" -lt 65536 ]
check "the API's records reach the EHR" wait_for 60 settled

# --- A crash between ingesting an inbox file and moving it -----------------------------------
stop_daemon
quarantined_before=$("$bin" status --config "$config" --json | node -e "console.log(JSON.parse(require('fs').readFileSync(0,'utf8')).quarantined)")
{ records --patients 1 --prefix CRASH --kinds c
  echo '{"record_type": "consultation", "record_id": "CRASH-BAD"}'
} > "$d/c.ndjson"
start_daemon MIGRAINE_TEST_FAILPOINT=after_inbox_commit
mv "$d/c.ndjson" "$d/inbox/c.ndjson"
wait "$daemon"; crashed=$?; daemon=""
check "the daemon was killed right after committing the file's records (failpoint)" [ "$crashed" -eq 137 ]
check "the file is still in the inbox" test -f "$d/inbox/c.ndjson"
start_daemon
check "after a restart the file is moved on" wait_for 20 test -f "$d/inbox/rejected/c.ndjson"
check "with its errors" grep -q '"record_id":"CRASH-BAD"' "$d/inbox/rejected/c.ndjson.errors.json"
quarantined_after=$("$bin" status --config "$config" --json | node -e "console.log(JSON.parse(require('fs').readFileSync(0,'utf8')).quarantined)")
check "its rejected record is quarantined once, not twice" [ $((quarantined_after - quarantined_before)) -eq 1 ]
check "its accepted record was stored once (the second time a duplicate)" [ "$("$bin" log --config "$config" --record CRASH-C-0 | grep ' received ' | grep -vc duplicate)" -eq 1 ]

# --- A dead letter, seen and replayed on the status page -------------------------------------
records --patients 1 --prefix DEAD --kinds c --phi > "$work/dead.ndjson"
ctl faults '{"status": 422, "count": 1}'
post "$work/dead.ndjson" > /dev/null
dead_at_least() { [ "$(state_count dead)" -ge "$1" ]; }
check "the EHR's 422 makes a dead letter" wait_for 30 dead_at_least 1
json_of /api/records?state=dead 'j.records.map(r => r.record_id).join(" ")' > "$work/dead.ids"
check "the dead letter is listed with its reason" [ "$(json_of /api/records?state=dead 'j.records[0].last_error')" != "" ]
dead_id=$(cut -d' ' -f1 "$work/dead.ids")
check "the dead letters alert is posted once" wait_for 20 grep -q '"alert":"dead_letters","state":"open"' "$work/alerts.jsonl"
ADMIN_URL=$admin node "$root/tests/browser/status_page_test.mjs" "$admin" "$dead_id" "$work/status-page.png" > "$work/browser.out" 2>&1
browser=$?
check "the status page shows the dead letter and replays it (Chromium)" [ "$browser" -eq 0 ]
[ "$browser" -eq 0 ] || cat "$work/browser.out"
delivered() { [ "$(json_of "/api/records/$1" 'j.revisions[0].state')" = delivered ]; }
check "the replayed record is delivered" wait_for 30 delivered "$dead_id"
check "the replay is in the sync log" logged "$dead_id" replayed
check "the dead letters alert closes once" wait_for 20 grep -q '"alert":"dead_letters","state":"closed"' "$work/alerts.jsonl"
check "the charts' /api/series counts this daemon's deliveries" [ "$(json_of /api/series 'j.total.delivered')" -ge 1 ]

# --- A flood: 12 records refused, then the EHR unreachable; one alert each ------------------
ctl faults '{"status": 422, "count": 12}'
records --patients 12 --prefix FLOOD --kinds c > "$work/flood.ndjson"
post "$work/flood.ndjson" > /dev/null
alerts_posted() { grep -c "\"alert\":\"$1\",\"state\":\"$2\"" "$work/alerts.jsonl"; }  # alerts_posted ALERT open|closed
check "a flood of refusals: twelve dead letters" wait_for 30 dead_at_least 12
posted() { [ "$(alerts_posted "$1" "$2")" -ge "$3" ]; }  # posted ALERT open|closed AT_LEAST
check "... and an alert" wait_for 20 posted dead_letters open 2
"$bin" replay --config "$config" --all-dead --reason "flood test: EHR fixed" > /dev/null
all_delivered() { settled && [ "$(state_count dead)" -eq 0 ]; }
check "replayed from the command line, the flood is delivered" wait_for 60 all_delivered
check "the flood opened exactly one more dead-letters alert" [ "$(alerts_posted dead_letters open)" -eq 2 ]
check "... and closed it once" wait_for 20 posted dead_letters closed 2
check "... not more than once" [ "$(alerts_posted dead_letters closed)" -eq 2 ]
ctl faults '{"reset": true, "count": 100000}'
records --patients 3 --prefix DOWN > "$work/down.ndjson"
post "$work/down.ndjson" > /dev/null
check "the EHR unreachable: one alert" wait_for 30 grep -q '"alert":"ehr_unreachable","state":"open"' "$work/alerts.jsonl"
check "/readyz says not ready, and why" [ "$(status_of /readyz)" = 503 ]
ctl clear-faults
check "mended: everything is delivered" wait_for 60 settled
check "the outage made no dead letter" [ "$(state_count dead)" -eq 0 ]
check "mended: the alert closes" wait_for 30 grep -q '"alert":"ehr_unreachable","state":"closed"' "$work/alerts.jsonl"
check "one open and one close for the outage" [ "$(alerts_posted ehr_unreachable open)$(alerts_posted ehr_unreachable closed)" = 11 ]
check "retries were logged during the outage" grep -q '"event":"retry_scheduled"' "$d"/sync.log*
ready() { [ "$(status_of /readyz)" = 200 ]; }
check "/readyz is ready again" wait_for 20 ready

# --- The status page's charts: this daemon's day (since its restart above) ---------------------
json_of /api/series 'JSON.stringify(j.total)' > "$work/series.json"
series_has() { node -e "const t=JSON.parse(require('fs').readFileSync('$work/series.json','utf8')); process.exit($1 ? 0 : 1)"; }
check "/api/series: the deliveries, the outage's retries and the flood's dead letters" \
  series_has 't.delivered >= 14 && t.retries >= 1 && t.dead_lettered >= 13'
check "/api/series: p50 and p95 from arrival to delivery" \
  series_has 't.latency_measured >= 13 && t.latency_p50_ms > 0 && t.latency_p95_ms >= t.latency_p50_ms'
check "/api/series in five-minute bins" [ "$(json_of '/api/series?width=300' 'j.delivered.length')" = 288 ]
check "/api/series refuses a width that does not tile the day" [ "$(status_of '/api/series?width=420')" = 400 ]

# --- What staff see ----------------------------------------------------------------------
get /metrics > "$work/metrics.txt"
check "metrics: records by state" grep -q '^migraine_records{state="delivered"} [1-9]' "$work/metrics.txt"
check "metrics: oldest pending age" grep -q '^migraine_oldest_pending_age_seconds ' "$work/metrics.txt"
check "metrics: delivery latency histogram" grep -q '^migraine_delivery_latency_seconds_bucket{le="+Inf"} [1-9]' "$work/metrics.txt"
check "metrics: retries by reason" grep -q '^migraine_retries_total{reason="connection"} [1-9]' "$work/metrics.txt"
check "metrics: dead letters" grep -q '^migraine_dead_letters 0' "$work/metrics.txt"
check "metrics: days until each certificate expires" grep -q '^migraine_certificate_expiry_days{setting="ehr.client_cert_file"} [1-9]' "$work/metrics.txt"
check "metrics: received by channel" grep -q '^migraine_records_received_total{channel="api"} [1-9]' "$work/metrics.txt"
"$bin" log --config "$config" --since 1h > "$work/log.txt"
for kind in received sent delivered dead_lettered retry_scheduled replayed alert_opened alert_closed rejected; do
  check "log: readable $kind lines" grep -q " $kind " "$work/log.txt"
done
check "log: the correlation id also sent as X-Request-ID" grep -q "\[$dead_id/r1/a1\]" "$work/log.txt"
check "log --since in the future shows nothing" [ -z "$("$bin" log --config "$config" --since 2099-01-01)" ]
check "the log rotated by size" test -f "$d/sync.log.1"
check "log reads the rotated files too" [ "$("$bin" log --config "$config" --json | wc -l)" -gt "$(wc -l < "$d/sync.log")" ]

# Everything staff can see, gathered; then no patient data anywhere in it.
seen=$work/seen
mkdir -p "$seen"
for path in /api/status /api/series /api/events?limit=1000 /api/quarantine?limit=1000 "/api/records/$dead_id" \
            /api/records?state=delivered\&limit=1000 /api/records?state=dead /readyz /metrics; do
  get "$path" >> "$seen/api.txt"
done
cp "$d"/sync.log* "$work"/run*.err "$work/run.out" "$work/alerts.jsonl" "$work/browser.out" "$seen/"
cp "$d"/inbox/rejected/*.errors.json "$seen/"
"$bin" log --config "$config" > "$seen/log-command.txt"
"$bin" status --config "$config" > "$seen/status.txt"
leaks=0
for marker in "${PHI[@]}"; do
  if grep -rlF -- "$marker" "$seen"; then leaks=$((leaks + 1)); echo "patient data '$marker' seen in the files above"; fi
done
check "no patient name, MRN, birth date, phone or e-mail in the log, stderr, metrics, API or alerts" [ "$leaks" -eq 0 ]
found=0
for marker in "${PHI[@]}"; do grep -qF -- "$marker" "$d/inbox/processed/a.ndjson" && found=$((found + 1)); done
check "(the records did carry every marker: the search above can fail)" [ "$found" -eq "${#PHI[@]}" ]

stop_daemon
check "SIGTERM: the daemon stopped cleanly" grep -q "stopped; nothing in flight" "$work/run$runs.err"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
