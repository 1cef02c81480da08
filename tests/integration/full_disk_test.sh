#!/usr/bin/env bash
# The store and the sync log on a small tmpfs that fills up under the running daemon: the ingest
# API answers 503 with Retry-After naming the store, /readyz fails its store check, an alert is
# posted, /healthz and the daemon stay up, and everything recovers by itself once space returns:
# nothing acknowledged is lost, nothing refused was stored. Then the same disk remounted read-only.
# Needs root (mount); skipped (77) without.
# Prints "N passed, M failed". Waits poll with a deadline; nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
disk=$work/disk
mkdir -p "$disk"
if ! mount -t tmpfs -o size=16m tmpfs "$disk" 2> /dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root); the full-disk test did not run"
  rm -rf "$work"
  exit 77
fi
trap 'stop_daemon; [ -n "${hook_pid:-}" ] && kill "$hook_pid"; stop_sandboxes; umount "$disk"; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
node "$root/tests/integration/webhook-receiver.mjs" "$certs/server.pem" "$certs/server.key" "$work/alerts.jsonl" \
  > "$work/hook.out" &
hook_pid=$!
wait_for 10 grep -q ready "$work/hook.out" || { echo "the webhook receiver did not start"; exit 1; }
hook_url=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/hook.out','utf8')).url)")

printf 'ingest-%s-%s\n' "$RANDOM" "$RANDOM" > "$work/ingest.token"
config=$work/connector.jsonc
cat > "$config" <<JSON
{ "store": { "path": "$disk/outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "$work/ingest.token" },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "$disk/sync.log" },
  "alerts": { "webhook_url": "$hook_url", "ca_file": "$certs/ca.pem" } }
JSON
start_daemon "$config"
token=$(head -1 "$work/ingest.token")
post() {  # post FILE: prints the status, the Retry-After header, then the body
  node "$root/tests/integration/https-request.mjs" POST "$api" --token "$token" --type application/x-ndjson \
    --body-file "$1" --show-header retry-after
}
get() { node "$root/tests/integration/https-request.mjs" GET "$admin$1"; }
readyz_says() { get /readyz | grep -qF "$1"; }
delivered() {  # delivered N: the status shows N records delivered and nothing waiting
  "$bin" status --config "$config" --json | node -e "
    const s=JSON.parse(require('fs').readFileSync(0,'utf8')).records;
    process.exit(s.delivered === $1 && !s.pending && !s.in_flight && !s.retry_scheduled ? 0 : 1)"
}
batch() {  # batch PREFIX N: N consultations of N patients
  node "$root/tests/integration/make-records.mjs" --patients "$2" --prefix "$1" --kinds c
}

batch BEFORE 5 > "$work/before.ndjson"
check "before: records are taken (202)" [ "$(post "$work/before.ndjson" | head -1)" = 202 ]
check "before: and delivered" wait_for 30 delivered 5
check "before: /readyz is ready" [ "$(get /readyz | head -1)" = 200 ]

# Fill the disk to the last block.
dd if=/dev/zero of="$disk/filler" bs=64k 2> /dev/null
batch FULL 200 > "$work/full.ndjson"
post "$work/full.ndjson" > "$work/full.answer"
check "full: the ingest API answers 503" [ "$(sed -n 1p "$work/full.answer")" = 503 ]
check "full: with Retry-After" [ -n "$(sed -n 2p "$work/full.answer")" ]
check "full: the message names the store and says it is full" grep -qF "store $disk/outbox.db is full" "$work/full.answer"
check "full: /readyz fails its store check" wait_for 10 readyz_says '"store_writable":false'
check "full: /readyz says why" readyz_says "store $disk/outbox.db is full"
check "full: a store_unwritable alert is posted" wait_for 20 grep -q '"store_unwritable"' "$work/alerts.jsonl"
check "full: /healthz still answers" [ "$(get /healthz | head -1)" = 200 ]
check "full: the daemon keeps running" kill -0 "$daemon"
check "full: stderr has the alert" grep -q "alert_opened: store_unwritable: the store $disk/outbox.db is full" "$work/run.err"

# Space returns: everything goes on by itself.
rm -f "$disk/filler"
check "space back: /readyz is ready again" wait_for 30 readyz_says '"store_writable":true'
check "space back: /readyz answers 200" [ "$(get /readyz | head -1)" = 200 ]
check "space back: the refused batch, sent again, is taken (202)" [ "$(post "$work/full.ndjson" | head -1)" = 202 ]
check "space back: everything is delivered, the refused batch once" wait_for 90 delivered 205
alert_closed() { grep '"store_unwritable"' "$work/alerts.jsonl" | grep -q closed; }
check "space back: the alert closes" wait_for 20 alert_closed
check "one store_unwritable alert opened, not one per evaluation" \
  [ "$(grep '"store_unwritable"' "$work/alerts.jsonl" | grep -vc closed)" -eq 1 ]
check "the EHR holds each record once" [ "$(ctl count Encounter)" -eq 205 ]
check "the sync log is written again" wait_for 10 grep -q "FULL-" "$disk/sync.log"

# The same disk read-only. Linux will not remount a file system read-only while a file on it is
# open for writing, so the daemon is stopped first: started on a read-only store, it refuses
# with a message naming the store (systemd's Restart= tries again), and once the disk is
# writable it delivers what it holds.
stop_daemon
mount -o remount,ro "$disk"
"$bin" run --config "$config" > "$work/ro.out" 2> "$work/ro.err"; rc=$?
check "read-only: run refuses to start (exit $rc)" [ "$rc" -ne 0 ]
check "read-only: saying which store and why" grep -qiE "store $disk/outbox.db.*(read-only|readonly)" "$work/ro.err"
batch RO 3 > "$work/ro.ndjson"
"$bin" ingest --config "$config" "$work/ro.ndjson" > "$work/ro-ingest.out" 2> "$work/ro-ingest.err"; rc=$?
check "read-only: ingest refuses too, nothing half-stored" [ "$rc" -ne 0 ]
mount -o remount,rw "$disk"
start_daemon "$config"
check "writable again: the batch is taken (202)" [ "$(post "$work/ro.ndjson" | head -1)" = 202 ]
check "writable again: everything is delivered" wait_for 60 delivered 208

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
