#!/usr/bin/env bash
# `backup --to FILE` under load, and a restore: the daemon delivers while records keep arriving
# and a backup is taken; the EHR then gets everything; the backup is restored in place of the
# store and the daemon started on it delivers what the backup held as undelivered again, without
# a single duplicate at the EHR. Prints "N passed, M failed". Nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
d=$work/clinic
mkdir -p "$d"
printf 'ingest-%s-%s\n' "$RANDOM" "$RANDOM" > "$d/ingest.token"
config=$d/connector.jsonc
cat > "$config" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token" } }
JSON
post() {
  node "$root/tests/integration/https-request.mjs" POST "$api" --token "$(head -1 "$d/ingest.token")" \
    --type application/x-ndjson --body-file "$1" | head -1
}
records_json() { "$bin" status --config "$1" --json | node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync(0,'utf8')).records))"; }
total_in() { "$bin" status --config "$1" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log(Object.values(r).reduce((a,b)=>a+b,0))"; }
settled() { [ "$("$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log((r.pending||0)+(r.in_flight||0)+(r.retry_scheduled||0)+(r.held||0))")" = 0 ]; }
resources() { ctl stats | node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync(0,'utf8')).resources))"; }

for i in 1 2 3 4; do
  node "$root/tests/integration/make-records.mjs" --patients 8 --prefix "B$i" > "$work/batch$i.ndjson"
done
start_daemon "$config"
check "batch 1 taken" [ "$(post "$work/batch1.ndjson")" = 202 ]
check "batch 2 taken" [ "$(post "$work/batch2.ndjson")" = 202 ]
delivered_some() { [ "$("$bin" status --config "$config" --json | node -e "
  console.log(JSON.parse(require('fs').readFileSync(0,'utf8')).records.delivered||0)")" -ge 10 ]; }
check "delivery under way" wait_for 60 delivered_some
# The backup while the daemon delivers and a third batch arrives.
post "$work/batch3.ndjson" > "$work/batch3.status" &
poster=$!
"$bin" backup --config "$config" --to "$work/backup.db" > "$work/backup.out" 2> "$work/backup.err"; rc=$?
wait "$poster"
check "backup under load: exit 0" [ "$rc" -eq 0 ]
check "backup: says where it wrote and how to restore" grep -q "written to $work/backup.db" "$work/backup.out"
check "backup: the file is owner-only (it holds patient data)" [ "$(stat -c %a "$work/backup.db")" = 600 ]
check "backup: no partial file left" [ ! -e "$work/backup.db.partial" ]
"$bin" backup --config "$config" --to "$work/backup.db" > /dev/null 2> "$work/again.err"; rc=$?
check "backup to an existing file: refused" [ "$rc" -ne 0 ]
check "... saying so" grep -q "exists already" "$work/again.err"
check "batch 3 taken meanwhile" [ "$(cat "$work/batch3.status")" = 202 ]
check "batch 4 taken after the backup" [ "$(post "$work/batch4.ndjson")" = 202 ]
check "everything is delivered" wait_for 120 settled
stop_daemon
delivered_resources=$(resources)
check "the EHR holds 32 patients' pathways" [ "$(ctl count Patient)" -eq 32 ]

# What the backup holds, read through a configuration of its own (a copy: nothing beside the original).
mkdir -p "$work/inspect"
cp "$work/backup.db" "$work/inspect/outbox.db"
cp "$d/outbox.db.key" "$work/inspect/outbox.db.key"
printf '{ "store": { "path": "outbox.db" } }\n' > "$work/inspect/connector.jsonc"
in_backup=$(total_in "$work/inspect/connector.jsonc")
echo "the backup holds $in_backup records: $(records_json "$work/inspect/connector.jsonc")"
check "the backup is a consistent store with records" [ "$in_backup" -ge 1 ]
check "... some delivered already, some waiting" node -e "
  const r=$(records_json "$work/inspect/connector.jsonc"); process.exit(r.delivered > 0 && r.delivered < $in_backup ? 0 : 1)"

# Restore: the daemon stopped, the backup in place of the store, its WAL files gone.
cp "$work/backup.db" "$d/outbox.db"
rm -f "$d/outbox.db-wal" "$d/outbox.db-shm"
start_daemon "$config"
check "restored: the daemon delivers what the backup held as waiting" wait_for 120 settled
stop_daemon
check "restored: the store holds exactly the backup's records" [ "$(total_in "$config")" -eq "$in_backup" ]
check "restored: nothing was created twice at the EHR" [ "$(resources)" = "$delivered_resources" ]
check "restored: still 32 patients" [ "$(ctl count Patient)" -eq 32 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
