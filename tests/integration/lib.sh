# Shared by the scripts that run the connector against the EHR sandbox (sourced, not run):
# the quick start, the delivery and crash tests, the delivery benchmark.
# Needs: root (the repository) and work (a scratch folder) set by the caller.

# check NAME COMMAND...: counts a passed or failed check; the caller prints "$passed passed, $failed failed".
passed=0 failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

# wait_for SECONDS COMMAND...: polls (every 0.1 s) until the command succeeds; 1 after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" > /dev/null 2>&1; do
    ((SECONDS > deadline)) && return 1
    sleep 0.1
  done
}

# launch_sandbox NAME CERT KEY [SANDBOX ARGS...]: starts the sandbox in the background (its pid
# is added to sandbox_pids). await_sandbox NAME [SECONDS]: waits (at most 30 s) for its ready line
# and sets BASE_<NAME> to its FHIR base URL. start_sandbox NAME CERT KEY [ARGS...]: both.
sandbox_pids=()
launch_sandbox() {
  local name=$1 cert=$2 key=$3; shift 3
  node "$root/tests/sandbox/ehr-sandbox.mjs" --cert "$cert" --key "$key" "$@" \
    > "$work/sandbox-$name.out" 2> "$work/sandbox-$name.err" &
  sandbox_pids+=($!)
}
await_sandbox() {
  local name=$1 deadline=$((SECONDS + ${2:-30}))
  until grep -q '"ready":true' "$work/sandbox-$name.out" 2>/dev/null; do
    if ((SECONDS > deadline)); then
      echo "the EHR sandbox ($name) did not start:"
      cat "$work/sandbox-$name.err"
      return 1
    fi
    sleep 0.1
  done
  local base
  base=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/sandbox-$name.out','utf8')).base)")
  printf -v "BASE_$name" '%s' "$base"
}
start_sandbox() {
  launch_sandbox "$@" && await_sandbox "$1"
}

# start_main_sandbox: development certificates in $work/certs (sets certs) and the sandbox "main"
# requiring client certificates from their CA (sets BASE_main); ctl talks to its control API.
start_main_sandbox() {
  certs=$work/certs
  "$root/certs/make-dev-certs.sh" "$certs" > /dev/null || return 1
  start_sandbox main "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert
}
ctl() { node "$root/tests/integration/sandbox-ctl.mjs" "$BASE_main" "$certs" "$@"; }

stop_sandboxes() {
  local pid
  for pid in "${sandbox_pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}

# start_daemon CONFIG [ENV=VALUE...]: `run` in the background, its stderr appended to $work/run.err;
# waits (at most 20 s) until it has started; sets daemon (its pid) and api and admin (the URLs of
# its ingest API and admin server, when configured). stop_daemon: SIGTERM, and waits for it.
daemon=""
start_daemon() {
  local config=$1; shift
  local before; before=$(grep -c "SIGTERM or SIGINT stops" "$work/run.err" 2> /dev/null)
  env "$@" "$bin" run --config "$config" >> "$work/run.out" 2>> "$work/run.err" &
  daemon=$!
  started() { [ "$(grep -c "SIGTERM or SIGINT stops" "$work/run.err")" -gt "${before:-0}" ]; }
  wait_for 20 started || { echo "the daemon did not start:"; cat "$work/run.err"; exit 1; }
  api=$(sed -n 's|.*ingest API on \(https\{0,1\}://[^ ]*/v1/records\).*|\1|p' "$work/run.err" | tail -1)
  admin=$(sed -n 's|.*admin API on \(https\{0,1\}://[^ ]*\)/$|\1|p' "$work/run.err" | tail -1)
}
stop_daemon() {
  if [ -n "$daemon" ]; then kill "$daemon" 2> /dev/null; wait "$daemon" 2> /dev/null; daemon=""; fi
}
