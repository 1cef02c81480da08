#!/usr/bin/env bash
# The command line as people and scripts use it: exit codes, output streams, error formats, and
# that no patient data reaches stderr. Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
run() {  # run ARGS... : sets rc, out, err
  "$bin" "$@" >"$work/out" 2>"$work/err"; rc=$?
  out=$(cat "$work/out"); err=$(cat "$work/err")
}
ex=$root/mappings/examples

run --help;    check "--help exits 0 and lists map" [ "$rc" -eq 0 ] ; check "--help text" grep -q "map \[--config FILE\]" "$work/out"
run --version; check "--version" grep -Eq "^migraine-connector [0-9]+\.[0-9]+\.[0-9]+$" "$work/out"
run;           check "no command is a usage error" [ "$rc" -eq 1 ]
run frobnicate; check "unknown command is a usage error" [ "$rc" -eq 1 ]
run map;       check "map without a file is a usage error" [ "$rc" -eq 1 ]

run map "$ex/procedure.json"
check "map exits 0" [ "$rc" -eq 0 ]
check "map prints one Bundle line" [ "$(wc -l < "$work/out")" -eq 1 ]
check "the Bundle is a transaction" grep -q '"resourceType":"Bundle","identifier":{"system":"https://clinic.example/fhir/record","value":"PROC-2026-0001/r1"},"type":"transaction"' "$work/out"

run map --pretty "$ex/consultation.json"
check "--pretty indents" grep -q '^  "type": "transaction",$' "$work/out"

# A whole pathway in one NDJSON file: each record sees the earlier ones as history.
for k in consultation procedure follow_up; do tr -d '\n' < "$ex/$k.json"; echo; done > "$work/pathway.ndjson"
run map "$work/pathway.ndjson"
check "NDJSON maps one Bundle per line" [ "$(wc -l < "$work/out")" -eq 3 ]
check "the follow-up does not wait when its procedure came first" [ -z "$err" ]
run map "$ex/follow_up.json"
check "a follow-up without its procedure exits 3" [ "$rc" -eq 3 ]
check "a held follow-up prints no Bundle" [ -z "$out" ]
check "a held follow-up says what it waits for" grep -q "FU-2026-0001: held: waits for procedure PROC-2026-0001" "$work/err"
# Later in the same file is fine: it is mapped as soon as its procedure has been.
for k in follow_up consultation procedure; do tr -d '\n' < "$ex/$k.json"; echo; done > "$work/unordered.ndjson"
run map "$work/unordered.ndjson"
check "a follow-up before its procedure exits 0" [ "$rc" -eq 0 ]
check "it is mapped after its procedure" bash -c "sed -n 3p '$work/out' | grep -q 'FU-2026-0001/r1'"
check "the procedure comes before it" bash -c "sed -n 2p '$work/out' | grep -q 'PROC-2026-0001/r1'"
# A revision not newer than one seen is a no-op.
sed 's/"revision": 1,/"revision": 2, "status": "amended",/' "$ex/procedure.json" > "$work/rev2.json"
run map --history "$work/rev2.json" "$ex/procedure.json"
check "a stale revision exits 0" [ "$rc" -eq 0 ]
check "a stale revision prints nothing" [ -z "$out" ]
check "a stale revision is reported as a no-op" grep -q "procedure.json:PROC-2026-0001: revision 1 is not newer than revision 2 already seen: no-op" "$work/err"
run map --history "$ex/procedure.json" --history "$ex/consultation.json" "$ex/follow_up.json"
check "--history in any order serves the follow-up" [ -z "$err" ] 
check "--history gives the response" grep -q 'headache-day-reduction-percent' "$work/out"

# Rejection: exit 2, problems on stderr as file:record_id: path: message, nothing on stdout.
sed 's/"vial_units": 200/"vial_units": 100/; s/"npi": "1234567893"/"npi": "1234567894"/' "$ex/procedure.json" > "$work/bad.json"
run map "$work/bad.json"
check "a rejected record exits 2" [ "$rc" -eq 2 ]
check "a rejected record prints no Bundle" [ -z "$out" ]
check "problem format (npi)" grep -qx "$work/bad.json:PROC-2026-0001: procedure.clinician.npi: check digit is not valid (Luhn with prefix 80840)" "$work/err"
check "problem format (vial_units)" grep -qx "$work/bad.json:PROC-2026-0001: procedure.product.vial_units: does not match the NDC, which is a 200 U vial" "$work/err"
run map --json "$work/bad.json"
check "--json prints an OperationOutcome" grep -q '^{"resourceType":"OperationOutcome","issue":\[{"severity":"error","code":"invariant"' "$work/out"
check "--json names the path" grep -q '"expression":\["procedure.product.vial_units"\]' "$work/out"
check "stderr carries no patient data" bash -c "! grep -Eq 'Jordan|Example|MRN-100234|1984-05-17|Rivera' '$work/err'"

# In NDJSON one bad line does not stop the others.
{ tr -d '\n' < "$ex/consultation.json"; echo; tr -d '\n' < "$work/bad.json"; echo; echo '{"record_type": '; } > "$work/mixed.ndjson"
run map "$work/mixed.ndjson"
check "NDJSON with bad lines exits 2" [ "$rc" -eq 2 ]
check "NDJSON good line still mapped" [ "$(wc -l < "$work/out")" -eq 1 ]
check "a malformed line is named by its line" grep -q "mixed.ndjson:line 3: malformed JSON at line 1" "$work/err"

# Hostile input: a huge record and a deeply nested one are refused with a clear error, no crash.
{ printf '{"record_type": "consultation", "record_id": "HUGE-1", "notes": "'; head -c 11000000 /dev/zero | tr '\0' 'x'; printf '"}'; } > "$work/huge.json"
run map "$work/huge.json"
check "a >10 MB record exits 2" [ "$rc" -eq 2 ]
check "a >10 MB record is refused by size" grep -q "huge.json:line 1: record is 11000067 bytes; the limit is 1048576 bytes" "$work/err"
{ printf '{"record_type": "procedure", "record_id": "DEEP-1", "extra": '; head -c 20000 /dev/zero | tr '\0' '['; head -c 20000 /dev/zero | tr '\0' ']'; printf '}'; } > "$work/deep.json"
run map "$work/deep.json"
check "a 20,000-level record exits 2" [ "$rc" -eq 2 ]
check "a 20,000-level record is refused by depth" grep -q "deep.json:line 1: malformed JSON at line 1, column 125: nested deeper than 64 levels" "$work/err"
printf '{"record_type": "consultation", "record_id": "T-1", "patient": {"mrn": "M' > "$work/truncated.json"
run map "$work/truncated.json"
check "a truncated record exits 2 naming the position" grep -q "truncated.json:line 1: malformed JSON at line 1, column 74: Missing a closing quotation mark" "$work/err"

run check "$ex/consultation.json" "$ex/procedure.json" "$work/bad.json"
check "check exits 2 when any record is rejected" [ "$rc" -eq 2 ]
check "check prints one line per problem on stdout" [ "$(wc -l < "$work/out")" -eq 2 ]
check "check counts records" grep -q "3 record(s) checked, 1 rejected" "$work/err"
run check "$ex/consultation.json"
check "check exits 0 when all are valid" [ "$rc" -eq 0 ]

# Flags are allowed: exit 0, flag on stderr, DetectedIssue in the Bundle.
sed 's/"expiration": "2027-03-31"/"expiration": "2026-08-01"/' "$ex/procedure.json" > "$work/expired.json"
run map "$work/expired.json"
check "a flagged record still exits 0" [ "$rc" -eq 0 ]
check "the flag is reported" grep -q "flag high product-expired: lot used on 2026-08-17, after its expiration date 2026-08-01" "$work/err"
check "the flag is a DetectedIssue" grep -q '"resourceType":"DetectedIssue"' "$work/out"

# Configuration errors exit 1 and name the setting.
echo '{"mapping": {"identifer_system": "x"}}' > "$work/bad-config.json"
run map --config "$work/bad-config.json" "$ex/procedure.json"
check "a bad configuration exits 1" [ "$rc" -eq 1 ]
check "it names the setting" grep -q "unknown setting mapping.identifer_system" "$work/err"
run map --config "$root/deploy/connector.example.jsonc" "$ex/procedure.json"
check "the example configuration works" [ "$rc" -eq 0 ]
check "the example configuration's systems are used" grep -q '"system":"https://headache-clinic.example.org/fhir/resource"' "$work/out"
run map "$work/does-not-exist.json"
check "a missing file exits 1" [ "$rc" -eq 1 ]

# ingest: durable outbox, duplicates are no-ops, rejections quarantined, status tells the truth.
cat > "$work/store.jsonc" <<JSON
{ "store": { "path": "store/outbox.db" } }
JSON
mkdir -p "$work/store"
run ingest --config "$work/store.jsonc" "$work/pathway.ndjson"
check "ingest exits 0 when all are accepted" [ "$rc" -eq 0 ]
check "ingest acknowledges what it stored" grep -qx "$work/pathway.ndjson: 3 accepted, 0 rejected" "$work/out"
run ingest --config "$work/store.jsonc" "$work/pathway.ndjson" "$work/bad.json"
check "ingest exits 2 when any is rejected" [ "$rc" -eq 2 ]
check "a resent file is a no-op" grep -qx "$work/pathway.ndjson: 0 accepted, 3 already stored, 0 rejected" "$work/out"
check "a rejection is listed with its field" grep -q "rejected $work/bad.json:PROC-2026-0001: procedure.clinician.npi: check digit is not valid" "$work/out"
run status --config "$work/store.jsonc"
check "status counts pending records" grep -q "records: pending 3 " "$work/out"
check "status counts quarantined records" grep -q "quarantined (rejected, kept with their problems): 1" "$work/out"
run status --config "$work/store.jsonc" --json
check "status --json" grep -q '"records":{"pending":3,' "$work/out"
check "status --json is JSON" node -e "JSON.parse(require('fs').readFileSync('$work/out','utf8'))"
check "no patient data in ingest or status output" bash -c "! grep -Eq 'Jordan|Example|MRN-100234|1984-05-17' '$work/out' '$work/err'"
check "the store is owner-only" [ "$(stat -c %a "$work/store/outbox.db")" = 600 ]

# A log that cannot be written never stops the connector: a warning, and the records are stored.
printf 'not a folder\n' > "$work/logs-blocked"
cat > "$work/no-log.jsonc" <<JSON
{ "store": { "path": "store-no-log/outbox.db" }, "log": { "path": "logs-blocked/sync-log.jsonl" } }
JSON
mkdir -p "$work/store-no-log"
run ingest --config "$work/no-log.jsonc" "$work/pathway.ndjson"
check "an unwritable log: ingest still stores (exit 0)" [ "$rc" -eq 0 ]
check "an unwritable log: ingest acknowledges" grep -q "3 accepted, 0 rejected" "$work/out"
check "an unwritable log: a warning names it" grep -q "warning: the sync log .*logs-blocked/sync-log.jsonl cannot be opened for appending" "$work/err"

# Human output cannot be forged: a file name with a line break and an escape sequence is printed escaped.
forged="$work/visit"$'\n'"2026-12-01 09:00:00  delivered       FAKE-1"$'\e'"[2J.json"
printf '{"record_type": "consultation"}' > "$forged"
run check "$forged"
check "check: a control character in a file name is escaped" grep -q 'visit\\n2026-12-01 09:00:00  delivered       FAKE-1\\x1b\[2J.json' "$work/out"
check "check: no forged line" [ "$(grep -c '^2026-12-01 09:00:00  delivered' "$work/out")" -eq 0 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
