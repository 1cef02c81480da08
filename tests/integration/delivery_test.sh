#!/usr/bin/env bash
# The connector delivering to the EHR sandbox over mutual TLS, as a clinic would run it:
# ingest, then sync --once; faults injected by the sandbox; TLS refused when it must be.
# Prints "N passed, M failed". Waits poll with a deadline; nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
stat_of() { ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }

# config NAME BASE [CA] [with-client-cert]: a configuration with its own store.
config() {
  local name=$1 base=$2 ca=${3:-$certs/ca.pem} client=${4:-yes}
  mkdir -p "$work/$name"
  local client_keys=""
  [ "$client" = yes ] && client_keys=", \"client_cert_file\": \"$certs/client.pem\", \"client_key_file\": \"$certs/client.key\""
  cat > "$work/$name/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$base", "ca_file": "$ca"$client_keys, "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 4000 } }
JSON
  echo "$work/$name/connector.jsonc"
}
sync_once() { "$bin" sync --once --config "$1" > "$work/sync.out" 2> "$work/sync.err"; rc=$?; }
# Runs sync --once until it exits 0, at most N times (retries are due within milliseconds here).
sync_until_done() { for _ in $(seq 1 "$2"); do sync_once "$1"; [ "$rc" -eq 0 ] && return 0; done; return 1; }
one_line() { tr -d '\n\r' < "$1"; echo; }

ex=$root/mappings/examples
# The pathway, follow-up first: it must wait for its procedure.
{ one_line "$ex/follow_up.json"; one_line "$ex/consultation.json"; one_line "$ex/procedure.json"; } > "$work/pathway.ndjson"

c1=$(config first "$BASE_main")
"$bin" ingest --config "$c1" "$work/pathway.ndjson" > /dev/null
handshakes_before=$(stat_of s.tlsHandshakes)  # this stats call's own connection included
sync_once "$c1"
handshakes_after=$(stat_of s.tlsHandshakes)    # counts this call's connection too
check "the pathway is delivered (exit 0)" [ "$rc" -eq 0 ]
check "three transactions" [ "$(stat_of s.transactions)" -eq 3 ]
check "one Patient" [ "$(ctl count Patient)" -eq 1 ]
check "one Procedure" [ "$(ctl count Procedure)" -eq 1 ]
check "13 administrations" [ "$(ctl count MedicationAdministration)" -eq 13 ]
check "three Provenance" [ "$(ctl count Provenance)" -eq 3 ]
check "the follow-up's response reached the EHR after its procedure" [ "$(ctl count AdverseEvent)" -eq 2 ]
check "what the EHR made of each entry is kept" node -e "
  const db = require('child_process').execFileSync('sqlite3', ['-readonly', '$work/first/outbox.db', \"SELECT ehr_response FROM records WHERE record_id = 'PROC-2026-0001'\"]).toString();
  const entries = JSON.parse(db);
  if (entries.length !== 26 || !entries.some((e) => /^201 Created Procedure\/[^/]+\/_history\/1$/.test(e))) process.exit(1);"
check "keep-alive: at most one TLS handshake per connection" [ $((handshakes_after - handshakes_before - 1)) -le 2 ]
check "the connector counted as many" grep -Eq "^TLS handshakes: [12]$" "$work/sync.out"
before=$(ctl stats)

# Sending the same records again (a fresh outbox, as after losing it) creates nothing new.
c2=$(config again "$BASE_main")
"$bin" ingest --config "$c2" "$work/pathway.ndjson" > /dev/null
sync_once "$c2"
check "the resend is accepted" [ "$rc" -eq 0 ]
check "the resend creates nothing" [ "$(ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log(JSON.stringify(s.resources))")" = "$(echo "$before" | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log(JSON.stringify(s.resources))")" ]

# Another patient for the fault cases.
patient() {  # patient N: a consultation of a new patient
  sed "s/MRN-100234/MRN-2000$1/; s/CONS-2026-0001/CONS-F-$1/" "$ex/consultation.json" | tr -d '\n'; echo
}

# 503 three times, then success.
c3=$(config unavailable "$BASE_main")
patient 1 > "$work/p1.ndjson"
"$bin" ingest --config "$c3" "$work/p1.ndjson" > /dev/null
ctl faults '{"status": 503, "count": 3}'
applied_before=$(stat_of s.faultsApplied)
check "503 x3 then success is delivered" sync_until_done "$c3" 10
check "the three 503s were answered" [ $(($(stat_of s.faultsApplied) - applied_before)) -eq 3 ]

# 429 with Retry-After: nothing is sent again before it.
c4=$(config throttled "$BASE_main")
patient 2 > "$work/p2.ndjson"
"$bin" ingest --config "$c4" "$work/p2.ndjson" > /dev/null
ctl faults '{"status": 429, "count": 1, "retryAfter": 2}'
sync_once "$c4"
check "429 leaves the record waiting (exit 3)" [ "$rc" -eq 3 ]
requests=$(stat_of s.requests)
sync_once "$c4"
check "no request before Retry-After" [ "$(stat_of s.requests)" -eq "$requests" ]
"$bin" status --config "$c4" > "$work/status.out"
check "status shows the scheduled retry" grep -q "retry_scheduled 1" "$work/status.out"
check "status names the reason" grep -q "last error: HTTP 429: will retry" "$work/status.out"
deadline=$((SECONDS + 10)); rc=3
while [ "$rc" -ne 0 ] && ((SECONDS < deadline)); do sleep 0.2; sync_once "$c4"; done
check "delivered once Retry-After has passed" [ "$rc" -eq 0 ]

# A connection reset mid-request: the outcome is unknown, so it is sent again (safely).
c5=$(config reset "$BASE_main")
patient 3 > "$work/p3.ndjson"
"$bin" ingest --config "$c5" "$work/p3.ndjson" > /dev/null
ctl faults '{"reset": true, "count": 1}'
sync_once "$c5"
check "a reset leaves the record waiting" [ "$rc" -eq 3 ]
check "delivered after the reset" sync_until_done "$c5" 5

# The EHR commits, then the connection drops before it answers: the outcome is unknown to the
# connector, which sends again; every write being conditional, nothing is created twice. Written
# as transactions from the start (ehr.write_mode transaction), so the fault meets the transaction
# rather than the /metadata read that write_mode auto makes first.
c5b=$(config unknown-outcome "$BASE_main")
sed -i 's/"timeout_seconds": 10 }/"timeout_seconds": 10, "write_mode": "transaction" }/' "$c5b"
patient 7 > "$work/p7.ndjson"
"$bin" ingest --config "$c5b" "$work/p7.ndjson" > /dev/null
ctl faults '{"reset": "after-commit", "count": 1}'
sync_once "$c5b"
check "an answer lost after the commit leaves the record waiting" [ "$rc" -eq 3 ]
encounters=$(ctl count Encounter)
check "delivered again after the lost answer" sync_until_done "$c5b" 5
check "sending again created nothing new" [ "$(ctl count Encounter)" -eq "$encounters" ]
"$bin" status --config "$c5b" > "$work/status.out"
check "status: the EHR was reached" grep -q "^EHR: reached .* ago (HTTP 200)$" "$work/status.out"

# 422 goes to the dead letter while the other patient goes on. As transactions from the start, so
# the 422 meets a record's transaction: at the /metadata read that write_mode auto makes first, a
# 422 is the EHR's fault, retried, never a dead letter (sync_engine_test covers that).
c6=$(config refused "$BASE_main")
sed -i 's/"timeout_seconds": 10 }/"timeout_seconds": 10, "write_mode": "transaction" }/' "$c6"
{ patient 4; patient 5; } > "$work/p45.ndjson"
"$bin" ingest --config "$c6" "$work/p45.ndjson" > /dev/null
ctl faults '{"status": 422, "count": 1}'
sync_once "$c6"
"$bin" status --config "$c6" > "$work/status.out"
check "one dead letter" grep -q "dead 1" "$work/status.out"
check "the other patient is delivered" grep -q "delivered 1" "$work/status.out"
check "the dead letter's reason is kept" grep -q "last error: HTTP 422: the EHR refused the record" "$work/status.out"

# Replay: the dead letter goes back to its lane, with who and why recorded.
"$bin" replay --config "$c6" --all-dead --reason "EHR fixed its profile" --dry-run > "$work/replay.out"
check "a dry run says what would be replayed, with the EHR's summary" grep -q "^would replay CONS-F-[45] revision 1 (was: HTTP 422: the EHR refused the record: error processing)$" "$work/replay.out"
"$bin" replay --config "$c6" --record CONS-F-4 > /dev/null 2>&1
check "replay without a reason is refused" [ $? -eq 1 ]
"$bin" replay --config "$c6" --all-dead --reason "EHR fixed its profile" > "$work/replay.out"
check "replay re-queues the dead letter" grep -q "^replayed CONS-F-[45] revision 1" "$work/replay.out"
sync_once "$c6"
check "the replayed record is delivered" [ "$rc" -eq 0 ]

# The daemon: delivers what arrives while it runs; SIGTERM stops it cleanly.
c7=$(config daemon "$BASE_main")
"$bin" run --config "$c7" > "$work/run.out" 2> "$work/run.err" &
daemon=$!
patient 6 > "$work/p6.ndjson"
"$bin" ingest --config "$c7" "$work/p6.ndjson" > /dev/null
deadline=$((SECONDS + 20)); delivered=no
while ((SECONDS < deadline)); do
  if "$bin" status --config "$c7" | grep -q "delivered 1"; then delivered=yes; break; fi
  sleep 0.1
done
check "the daemon delivers a record ingested while it runs" [ "$delivered" = yes ]
kill -TERM "$daemon"
wait "$daemon"
check "SIGTERM: the daemon exits 0" [ $? -eq 0 ]
check "SIGTERM: it says nothing was left in flight" grep -q "stopped; nothing in flight" "$work/run.err"

# config-check: the certificates a configuration names.
"$bin" config-check --config "$c1" > "$work/check.out"
check "config-check passes a sound configuration" [ $? -eq 0 ]
check "config-check reports the client certificate's validity" grep -q "^ok     ehr.client_cert_file .*: valid for [0-9]* more days$" "$work/check.out"
check "config-check reads the EHR's CapabilityStatement: one transaction per record" \
  grep -q "^ok     ehr.write_mode auto: transaction (the EHR advertises transaction" "$work/check.out"
check "config-check says per type how it is sent" \
  grep -Eq "^ +Procedure +in the transaction: conditional create, conditional update for amendments$" "$work/check.out"
sed "s|$certs/client.key|$certs/other-client.key|; s|\"ca_file\": \"$certs/ca.pem\"|\"ca_file\": \"$certs/expired.pem\"|" "$c1" > "$work/first/bad.jsonc"
"$bin" config-check --config "$work/first/bad.jsonc" > "$work/check.out"
check "config-check fails a broken configuration" [ $? -eq 1 ]
check "config-check names an expired certificate" grep -q "^ERROR  ehr.ca_file .*expired.pem: expired [0-9]* days ago$" "$work/check.out"
check "config-check names a key of another certificate" grep -q "^ERROR  ehr.client_key_file .*other-client.key does not match ehr.client_cert_file$" "$work/check.out"

# The EHR down: the daemon backs off as a whole, waiting longer each round.
c8=$(config down "https://127.0.0.1:1/fhir")
{ patient 8; patient 9; patient 10; } > "$work/p8.ndjson"
"$bin" ingest --config "$c8" "$work/p8.ndjson" > /dev/null
"$bin" run --config "$c8" > /dev/null 2> "$work/down.err" &
daemon=$!
deadline=$((SECONDS + 15))
until [ "$(grep -c 'next try in' "$work/down.err")" -ge 2 ] || ((SECONDS > deadline)); do sleep 0.1; done
kill -TERM "$daemon"; wait "$daemon"
waits=($(sed -n 's/.*next try in \([0-9]*\) ms/\1/p' "$work/down.err"))
check "the EHR down: the daemon backs off" [ "${#waits[@]}" -ge 2 ]
check "the EHR down: each wait longer than the last" [ "${waits[1]:-0}" -gt "${waits[0]:-0}" ]
"$bin" status --config "$c8" > "$work/status.out"
check "the EHR down: status says so" grep -q "^EHR: NOT reached .*connect: Connection refused" "$work/status.out"

# Another clinic's identifier base: its own extensions live under it. A strict server that does not
# know their StructureDefinitions refuses the bundles that carry one (dead letters, 422); loaded from what
# `profiles --config` prints, the same records are accepted.
cb=$(config other-base "$BASE_main")
sed -i 's|"store"|"mapping": { "identifier_system": "https://other-clinic.example.net/fhir" }, "store"|' "$cb"
"$bin" profiles --config "$cb" > "$work/other-base-profiles.json"
check "profiles: our extensions under the configured base" grep -Eq '"url": *"https://other-clinic.example.net/fhir/StructureDefinition/billing-modifier"' "$work/other-base-profiles.json"
"$bin" ingest --config "$cb" "$work/pathway.ndjson" > /dev/null
sync_once "$cb"
"$bin" status --config "$cb" > "$work/status.out"
check "unknown extensions: consultation and procedure refused by the EHR" grep -q " dead 2 " "$work/status.out"
check "unknown extensions: the EHR's answer names the extension" grep -q '"ehr_error":"error invalid at Bundle.entry\[22\].resource.extension\[0\]"' "$work/other-base/sync-log.jsonl"
start_sandbox profiled "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --profiles "$work/other-base-profiles.json" || exit 1
cb2=$(config other-base-profiled "$BASE_profiled")
sed -i 's|"store"|"mapping": { "identifier_system": "https://other-clinic.example.net/fhir" }, "store"|' "$cb2"
"$bin" ingest --config "$cb2" "$work/pathway.ndjson" > /dev/null
sync_until_done "$cb2" 3
check "with the clinic's profiles loaded the pathway is delivered" [ "$rc" -eq 0 ]

# TLS refused: another CA, no client certificate, another host name, an expired certificate.
requests=$(stat_of s.requests)
tls_refused() {  # tls_refused NAME CONFIG PATTERN [tls_fault]
  "$bin" ingest --config "$2" "$work/p1.ndjson" > /dev/null
  sync_once "$2"
  check "$1: refused (exit 3)" [ "$rc" -eq 3 ]
  "$bin" status --config "$2" > "$work/status.out"
  check "$1: status says why" grep -Eq "last error: .*$3" "$work/status.out"
  check "$1: status says the EHR was not reached" grep -q "^EHR: NOT reached" "$work/status.out"
  if [ "${4:-}" = tls_fault ]; then  # the server's certificate refused: a TLS fault in the sync log
    check "$1: the sync log has a tls_fault event" grep -q '"event":"tls_fault"' "$(dirname "$2")/sync-log.jsonl"
  fi
}
tls_refused "server from another CA" "$(config other-ca "$BASE_main" "$certs/other-ca.pem")" "certificate not accepted" tls_fault
tls_refused "no client certificate" "$(config no-client "$BASE_main" "$certs/ca.pem" no)" "the EHR requires a client certificate, and none is configured"
check "nothing was delivered over a refused connection" [ "$(stat_of s.requests)" -eq "$requests" ]
start_sandbox wronghost "$certs/wrong-host.pem" "$certs/wrong-host.key" || exit 1
tls_refused "certificate for another host" "$(config wrong-host "$BASE_wronghost")" "certificate not accepted: hostname mismatch" tls_fault
start_sandbox expired "$certs/expired.pem" "$certs/expired.key" || exit 1
tls_refused "expired certificate" "$(config expired "$BASE_expired")" "certificate not accepted: certificate has expired" tls_fault


# Every other TLS refusal, under a permissive system configuration too: tls_matrix_test.sh.

# An IPv6 literal in the base URL.
start_sandbox v6 "$certs/server.pem" "$certs/server.key" --host ::1 || exit 1
v6_port=$(node -e "console.log(new URL('$BASE_v6').port)")
c=$(config v6 "https://[::1]:$v6_port/fhir" "$certs/ca.pem" no)
"$bin" ingest --config "$c" "$work/p1.ndjson" > /dev/null
sync_until_done "$c" 3
check "an IPv6 literal base URL (https://[::1]:port/fhir) is delivered to" [ "$rc" -eq 0 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
