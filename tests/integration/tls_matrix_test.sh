#!/usr/bin/env bash
# The connector's TLS client against EHR servers with bad and good certificates and protocols.
#
#   bash tests/integration/tls_matrix_test.sh build/bin/migraine-connector
#
# Every case runs twice: under the system's OpenSSL configuration, and under a permissive one
# (OPENSSL_CONF: security level 0, TLS 1.0 allowed). The TLS policy is the connector's own, so the
# outcome must be the same under both.
#   Refused (exit 3, status "EHR: NOT reached" with a reason, and no HTTP request byte reaches the
#   server): expired, not yet valid, self-signed, untrusted root, wrong host, missing intermediate,
#   RSA-1024, SHA-1 signature, TLS 1.0 only, TLS 1.1 only, clientAuth-only EKU, IP SAN mismatch,
#   DNS SAN mismatch. The server is `openssl s_server`, which prints whatever it receives; after the
#   connector, a probe (openssl s_client) sends a GET, which must arrive (the server was listening
#   and recording) and be the only request there. A control shows that a request the connector does
#   send (to a server it trusts) would be seen.
#   Accepted (exit 0, the record delivered): TLS 1.2 and TLS 1.3, each with an RSA-2048 and an
#   ECDSA P-256 certificate, and a chain whose intermediate the server sends. The server is the EHR
#   sandbox, pinned to one protocol version (--tls-version).
# All certificates are made here, in the work folder. Prints "N passed, M failed"; KEEP=1 keeps the
# work folder. Waits poll with a deadline; nothing sleeps blindly.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
unset OPENSSL_CONF  # "system": the system's own configuration, whatever the caller's environment says

s_server_pid=""
stop_s_server() {
  [ -n "$s_server_pid" ] || return 0
  kill "$s_server_pid" 2> /dev/null
  wait "$s_server_pid" 2> /dev/null
  s_server_pid=""
}
trap 'stop_s_server; stop_sandboxes; [ -n "${KEEP:-}" ] && echo "work folder kept: $work" || rm -rf "$work"' EXIT

die() { echo "tls_matrix: $*" >&2; exit 1; }
command -v openssl > /dev/null || die "openssl not found"

# ---------------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------------
pki=$work/pki
mkdir -p "$pki/db/new"
: > "$pki/db/index.txt"
echo 01 > "$pki/db/serial"
ossl() { openssl "$@" >> "$pki/openssl.log" 2>&1 || { cat "$pki/openssl.log" >&2; die "openssl $1 failed"; }; }

cat > "$pki/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $pki/db/index.txt
serial = $pki/db/serial
new_certs_dir = $pki/db/new
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

# newkey NAME ec|rsa2048|rsa1024
newkey() {
  case $2 in
    ec) ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$pki/$1.key" ;;
    rsa*) ossl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2#rsa}" -out "$pki/$1.key" ;;
  esac
}
# self_signed_ca NAME KEYTYPE
self_signed_ca() {
  newkey "$1" "$2"
  ossl req -new -x509 -config "$pki/ca.cnf" -extensions root -key "$pki/$1.key" -subj "/CN=tls-matrix $1" \
    -days 30 -out "$pki/$1.pem"
}
# leaf_ext EKU SAN: the extensions of a server certificate, in $pki/leaf.ext
leaf_ext() {
  printf '[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n' > "$pki/leaf.ext"
  printf 'extendedKeyUsage = %s\nsubjectAltName = %s\n' "$1" "$2" >> "$pki/leaf.ext"
  printf 'subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n' >> "$pki/leaf.ext"
}
# leaf NAME KEYTYPE ISSUER EKU SAN [openssl ca options...]: a server certificate signed by ISSUER.
# The subject CN is never a host name, so only the subjectAltName can match.
leaf() {
  local name=$1 keytype=$2 issuer=$3 eku=$4 san=$5; shift 5
  newkey "$name" "$keytype"
  ossl req -new -config "$pki/ca.cnf" -key "$pki/$name.key" -subj "/CN=${leaf_cn:-tls-matrix $name}" -out "$pki/$name.csr"
  leaf_ext "$eku" "$san"
  ossl ca -batch -notext -config "$pki/ca.cnf" -rand_serial -cert "$pki/$issuer.pem" -keyfile "$pki/$issuer.key" \
    -extfile "$pki/leaf.ext" -extensions leaf -in "$pki/$name.csr" -out "$pki/$name.pem" "$@"
}
hosts="DNS:localhost,IP:127.0.0.1"

self_signed_ca ca rsa2048      # the CA the connector trusts (ca_file), and nothing else
self_signed_ca other-ca ec     # a CA it does not trust
newkey intermediate ec
ossl req -new -config "$pki/ca.cnf" -key "$pki/intermediate.key" -subj "/CN=tls-matrix intermediate" -out "$pki/intermediate.csr"
ossl ca -batch -notext -config "$pki/ca.cnf" -rand_serial -cert "$pki/ca.pem" -keyfile "$pki/ca.key" \
  -extensions intermediate -in "$pki/intermediate.csr" -out "$pki/intermediate.pem"

leaf good-rsa rsa2048 ca serverAuth "$hosts"
leaf good-ec ec ca serverAuth "$hosts"
leaf chained ec intermediate serverAuth "$hosts"
cat "$pki/chained.pem" "$pki/intermediate.pem" > "$pki/chained-with-intermediate.pem"
leaf expired ec ca serverAuth "$hosts" -startdate 20200101000000Z -enddate 20200201000000Z
leaf not-yet-valid ec ca serverAuth "$hosts" -startdate 20900101000000Z -enddate 20910101000000Z
leaf untrusted-root ec other-ca serverAuth "$hosts"
leaf wrong-host ec ca serverAuth "DNS:not-localhost.invalid"
leaf rsa1024 rsa1024 ca serverAuth "$hosts"
leaf sha1 ec ca serverAuth "$hosts" -md sha1
leaf client-eku ec ca clientAuth "$hosts"
leaf ip-mismatch ec ca serverAuth "IP:127.0.0.2,DNS:localhost"
leaf dns-mismatch ec ca serverAuth "IP:127.0.0.1"
# The host name only in the subject CN: RFC 6125 and browsers ignore the CN; so does the connector.
leaf_cn=localhost leaf cn-only ec ca serverAuth "IP:127.0.0.1"
newkey self-signed ec
ossl req -new -config "$pki/ca.cnf" -key "$pki/self-signed.key" -subj "/CN=tls-matrix self-signed" -out "$pki/self-signed.csr"
leaf_ext serverAuth "$hosts"
ossl x509 -req -in "$pki/self-signed.csr" -signkey "$pki/self-signed.key" -days 30 -extfile "$pki/leaf.ext" \
  -extensions leaf -out "$pki/self-signed.pem"

# Sanity: the good ones verify against the CA (the chained one with its intermediate), the bad ones as intended.
quiet() { "$@" > /dev/null 2>&1; }
check "certificates: the good ones verify" \
  quiet openssl verify -CAfile "$pki/ca.pem" "$pki/good-rsa.pem" "$pki/good-ec.pem" "$pki/sha1.pem" "$pki/rsa1024.pem"
check "certificates: the chained one verifies with its intermediate" \
  quiet openssl verify -CAfile "$pki/ca.pem" -untrusted "$pki/intermediate.pem" "$pki/chained.pem"
check "certificates: the SHA-1 one is SHA-1 signed" \
  grep -q 'Signature Algorithm: sha1WithRSAEncryption' <(openssl x509 -in "$pki/sha1.pem" -noout -text)
check "certificates: the not-yet-valid one starts in 2090" \
  [ "$(openssl x509 -in "$pki/not-yet-valid.pem" -noout -startdate)" = "notBefore=Jan  1 00:00:00 2090 GMT" ]
check "certificates: the expired one ended in 2020" \
  [ "$(openssl x509 -in "$pki/expired.pem" -noout -enddate)" = "notAfter=Feb  1 00:00:00 2020 GMT" ]

# sandbox-ctl.mjs wants a folder with ca.pem, client.pem and client.key; these sandboxes never ask
# for a client certificate, so any key pair does.
ctl_certs=$work/ctl-certs
mkdir -p "$ctl_certs"
cp "$pki/ca.pem" "$ctl_certs/ca.pem"
cp "$pki/good-ec.pem" "$ctl_certs/client.pem"
cp "$pki/good-ec.key" "$ctl_certs/client.key"
sctl() { node "$root/tests/integration/sandbox-ctl.mjs" "$1" "$ctl_certs" "${@:2}"; }

# ---------------------------------------------------------------------------------------------------
# The EHR sandboxes for the accepted cases: started now (in the background; they take seconds to load
# their definitions), awaited after the refused cases.
# ---------------------------------------------------------------------------------------------------
accepted_cases=(tls12_rsa tls12_ec tls13_rsa tls13_ec chain)
launch_sandbox tls12_rsa "$pki/good-rsa.pem" "$pki/good-rsa.key" --tls-version TLSv1.2
launch_sandbox tls12_ec "$pki/good-ec.pem" "$pki/good-ec.key" --tls-version TLSv1.2
launch_sandbox tls13_rsa "$pki/good-rsa.pem" "$pki/good-rsa.key" --tls-version TLSv1.3
launch_sandbox tls13_ec "$pki/good-ec.pem" "$pki/good-ec.key" --tls-version TLSv1.3
launch_sandbox chain "$pki/chained-with-intermediate.pem" "$pki/chained.key"

# ---------------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------------
cat > "$work/permissive-openssl.cnf" <<'CNF'
openssl_conf = init
[init]
ssl_conf = ssl_section
[ssl_section]
system_default = system_default_section
[system_default_section]
CipherString = DEFAULT@SECLEVEL=0
MinProtocol = TLSv1
CNF
# mode: "system" or "permissive"; run_mode COMMAND...: runs it under that mode's OpenSSL configuration.
mode=system
run_mode() {
  if [ "$mode" = permissive ]; then OPENSSL_CONF=$work/permissive-openssl.cnf "$@"; else "$@"; fi
}

ex=$root/mappings/examples
patients=0
patient() {  # a consultation of a new patient, one NDJSON line
  patients=$((patients + 1))
  sed "s/MRN-100234/MRN-TLS-$patients/; s/CONS-2026-0001/CONS-TLS-$patients/" "$ex/consultation.json" | tr -d '\n'; echo
}

# prepare_case NAME BASE_URL: a configuration with its own store ($case_dir), one record ingested.
prepare_case() {
  case_dir=$work/$mode/${1// /-}
  mkdir -p "$case_dir"
  cat > "$case_dir/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$2", "ca_file": "$pki/ca.pem", "connections": 1, "timeout_seconds": 5 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 } }
JSON
  patient > "$case_dir/record.ndjson"
  run_mode "$bin" ingest --config "$case_dir/connector.jsonc" "$case_dir/record.ndjson" > "$case_dir/ingest.out" 2>&1 \
    || echo "  ($mode/$1: ingest failed: $(tr '\n' ' ' < "$case_dir/ingest.out"))"
}
# sync_case: sync --once, then status; sets rc (the sync's exit code) and reason (the last error).
sync_case() {
  run_mode "$bin" sync --once --config "$case_dir/connector.jsonc" > "$case_dir/sync.out" 2> "$case_dir/sync.err"
  rc=$?
  run_mode "$bin" status --config "$case_dir/connector.jsonc" > "$case_dir/status.out" 2>&1
  reason=$(sed -n 's/^last error: //p' "$case_dir/status.out")
}
# says_why PATTERN: the status's last error matches PATTERN (extended regex); prints it if not.
says_why() {
  grep -Eq "^last error: .*($1)" "$case_dir/status.out" && return 0
  echo "  status says: last error: ${reason:-(none)}; $(grep '^EHR:' "$case_dir/status.out")"
  return 1
}
not_reached() {
  grep -q '^EHR: NOT reached' "$case_dir/status.out" && return 0
  echo "  status says: $(grep '^EHR:' "$case_dir/status.out" || echo '(no EHR line)')"
  return 1
}

# ---------------------------------------------------------------------------------------------------
# Refused cases: openssl s_server
# ---------------------------------------------------------------------------------------------------
mkfifo "$work/s_server.stdin"
# start_s_server OUT ARGS...: on a random port of 127.0.0.1 below the ephemeral range (sets port;
# another one if that is taken: s_server cannot pick its own). Its stdin is a FIFO held open for
# reading and writing: it never sees EOF, so it serves connection after connection and prints
# whatever each client sends.
start_s_server() {
  local out=$1; shift
  local try deadline
  for try in $(seq 1 10); do
    port=$((20000 + RANDOM % 12000))
    openssl s_server -accept "127.0.0.1:$port" -no-CAfile -no-CApath -no-CAstore "$@" \
      0<> "$work/s_server.stdin" > "$out" 2> "$out.err" &
    s_server_pid=$!
    deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
      grep -q '^ACCEPT' "$out" 2> /dev/null && return 0
      kill -0 "$s_server_pid" 2> /dev/null || break
      sleep 0.05
    done
    stop_s_server
  done
  echo "openssl s_server did not start: $(cat "$out.err")"
  return 1
}
# probe PROTOCOL_FLAG: a GET from openssl s_client, accepting anything (no verification, level 0).
probe() {
  printf 'GET /tls-matrix-probe HTTP/1.0\r\n\r\n' \
    | timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -cipher 'DEFAULT@SECLEVEL=0' $1 \
      > "$case_dir/probe.out" 2>&1
}
# received_nothing_but_the_probe OUT: the probe's GET arrived (so any earlier request would have been
# printed already: s_server serves one connection at a time), and no other request bytes did.
received_nothing_but_the_probe() {
  if ! wait_for 10 grep -q '^GET /tls-matrix-probe' "$1"; then
    echo "  the probe's GET did not reach the server: $(tail -3 "$case_dir/probe.out" | tr '\n' ' ')"
    return 1
  fi
  local other
  other=$(grep -v '^GET /tls-matrix-probe' "$1" | grep -Ea '(GET|POST|PUT|PATCH|DELETE|HEAD) /|HTTP/1\.|^[Hh]ost:|migraine-connector|X-Request-ID')
  [ -z "$other" ] && return 0
  echo "  the server received: $(head -3 <<< "$other" | cut -c1-120 | tr '\n' ' ')"
  return 1
}

# refused NAME HOST PATTERN CERT KEY [S_SERVER ARGS...]: the connector, given https://HOST:PORT/fhir,
# refuses the server and sends it nothing.
refused() {
  local name=$1 host=$2 pattern=$3 cert=$4 key=$5; shift 5
  local label="[$mode] $name" proto_flag=""
  case " $* " in *" -tls1 "*) proto_flag=-tls1 ;; *" -tls1_1 "*) proto_flag=-tls1_1 ;; esac
  local out=$work/$mode/s_server-${name// /-}.out
  mkdir -p "$work/$mode"
  if ! start_s_server "$out" -cert "$pki/$cert.pem" -key "$pki/$key.key" "$@"; then
    check "$label: the server starts" false
    return
  fi
  prepare_case "$name" "https://$host:$port/fhir"
  sync_case
  echo "$label: exit $rc; last error: ${reason:-(none)}"
  check "$label: refused (exit 3)" [ "$rc" -eq 3 ]
  check "$label: status says the EHR was not reached" not_reached
  check "$label: status gives the reason" says_why "$pattern"
  probe "$proto_flag"
  check "$label: no request reached the server" received_nothing_but_the_probe "$out"
  stop_s_server
}

cert_refused="certificate not accepted"
protocol_refused="TLS handshake: .*(protocol|version)"
refused_matrix() {
  refused "expired" localhost "$cert_refused: certificate has expired" expired expired
  refused "not yet valid" localhost "$cert_refused: certificate is not yet valid" not-yet-valid not-yet-valid
  refused "self-signed" localhost "$cert_refused: self[- ]signed certificate" self-signed self-signed
  refused "untrusted root" localhost "$cert_refused: unable to get local issuer certificate" untrusted-root untrusted-root
  refused "wrong host" localhost "$cert_refused: hostname mismatch" wrong-host wrong-host
  refused "missing intermediate" localhost "$cert_refused: unable to get local issuer certificate" chained chained
  refused "RSA-1024 key" localhost "$cert_refused|key too small|too weak" rsa1024 rsa1024 -cipher 'DEFAULT@SECLEVEL=0'
  refused "SHA-1 signature" localhost "$cert_refused|too weak" sha1 sha1 -cipher 'DEFAULT@SECLEVEL=0'
  refused "TLS 1.0 only" localhost "$protocol_refused" good-rsa good-rsa -tls1 -cipher 'DEFAULT@SECLEVEL=0'
  refused "TLS 1.1 only" localhost "$protocol_refused" good-rsa good-rsa -tls1_1 -cipher 'DEFAULT@SECLEVEL=0'
  refused "clientAuth-only EKU" localhost "$cert_refused: (unsupported|unsuitable) certificate purpose" client-eku client-eku
  refused "IP SAN mismatch" 127.0.0.1 "$cert_refused: IP address mismatch" ip-mismatch ip-mismatch
  refused "DNS SAN mismatch" localhost "$cert_refused: hostname mismatch" dns-mismatch dns-mismatch
  refused "host name only in the subject CN" localhost "$cert_refused: hostname mismatch" cn-only cn-only
}

# The control for "no request reached the server": with a certificate it trusts and a server that
# never answers, the connector's request does show up in the server's output.
detector_control() {
  mkdir -p "$work/$mode"
  local out=$work/$mode/s_server-control.out
  start_s_server "$out" -cert "$pki/good-ec.pem" -key "$pki/good-ec.key" || return 1
  prepare_case control "https://localhost:$port/fhir"
  sed -i 's/"timeout_seconds": 5/"timeout_seconds": 1/' "$case_dir/connector.jsonc"
  run_mode "$bin" sync --once --config "$case_dir/connector.jsonc" > "$case_dir/sync.out" 2>&1
  probe ""
  local seen=1
  received_nothing_but_the_probe "$out" > /dev/null || seen=0
  grep -qaE '^(POST /fhir|GET /fhir/metadata) HTTP/1.1' "$out" || seen=1  # write_mode auto reads /metadata first
  stop_s_server
  return $seen
}

# The permissive configuration is really in effect: under it, a plain openssl s_client (no options)
# completes a TLS 1.0 handshake with a TLS 1.0 only server. So a refusal under it is the connector's.
permissive_in_effect() {
  case_dir=$work/permissive
  mkdir -p "$case_dir"
  start_s_server "$work/s_server-tls1-premise.out" -cert "$pki/good-rsa.pem" -key "$pki/good-rsa.key" -tls1 \
    -cipher 'DEFAULT@SECLEVEL=0' || return 1
  OPENSSL_CONF=$work/permissive-openssl.cnf openssl s_client -connect "127.0.0.1:$port" < /dev/null \
    > "$case_dir/premise.out" 2>&1
  local ok=$?
  stop_s_server
  [ "$ok" -eq 0 ] && grep -q 'Protocol *: TLSv1$' "$case_dir/premise.out" && return 0
  echo "  s_client: $(grep -E 'Protocol|error' "$case_dir/premise.out" | head -3 | tr '\n' ' ')"
  return 1
}

check "control: a request the connector sends to a server it trusts shows up in that server's output" detector_control
for mode in system permissive; do
  [ "$mode" = permissive ] && check "[permissive] the configuration lets a plain OpenSSL client speak TLS 1.0" permissive_in_effect
  refused_matrix
done

# ---------------------------------------------------------------------------------------------------
# Accepted cases: the EHR sandbox
# ---------------------------------------------------------------------------------------------------
echo "(refused cases done at $SECONDS s)"
for name in "${accepted_cases[@]}"; do await_sandbox "$name" 60 || exit 1; done
echo "(sandboxes ready at $SECONDS s)"

# speaks_only PORT VERSION: the sandbox completes a handshake at VERSION and refuses the other one.
speaks_only() {
  local yes=-tls1_2 no=-tls1_3
  [ "$2" = TLSv1.3 ] && { yes=-tls1_3; no=-tls1_2; }
  openssl s_client -connect "127.0.0.1:$1" -servername localhost $yes < /dev/null > "$work/speaks-$1.out" 2>&1 \
    && ! openssl s_client -connect "127.0.0.1:$1" -servername localhost $no < /dev/null > /dev/null 2>&1
}
port_of() { local p=${1#https://*:}; echo "${p%%/*}"; }
check "the sandbox pinned to TLS 1.2 (RSA) speaks only TLS 1.2" speaks_only "$(port_of "$BASE_tls12_rsa")" TLSv1.2
check "the sandbox pinned to TLS 1.2 (ECDSA) speaks only TLS 1.2" speaks_only "$(port_of "$BASE_tls12_ec")" TLSv1.2
check "the sandbox pinned to TLS 1.3 (RSA) speaks only TLS 1.3" speaks_only "$(port_of "$BASE_tls13_rsa")" TLSv1.3
check "the sandbox pinned to TLS 1.3 (ECDSA) speaks only TLS 1.3" speaks_only "$(port_of "$BASE_tls13_ec")" TLSv1.3
check "the chain sandbox sends the intermediate" bash -c \
  "openssl s_client -connect 127.0.0.1:$(port_of "$BASE_chain") -servername localhost -showcerts < /dev/null 2> /dev/null | grep -c 'BEGIN CERTIFICATE' | grep -qx 2"

transactions_of() { sctl "$1" stats | sed -n 's/.*"transactions": *\([0-9]*\).*/\1/p'; }
# accepted NAME LABEL: the connector delivers the record to the sandbox NAME, which has received
# one transaction (this one) per mode so far: only this test talks to it.
declare -A delivered_to
accepted() {
  local name=$1 label="[$mode] $2"
  local base_var=BASE_$name
  local base=${!base_var}
  delivered_to[$name]=$((${delivered_to[$name]:-0} + 1))
  prepare_case "$name" "$base"
  sync_case
  echo "$label: exit $rc; last error: ${reason:-(none)}"
  check "$label: delivered (exit 0)" [ "$rc" -eq 0 ]
  check "$label: status says the EHR was reached" grep -q '^EHR: reached .*(HTTP 200)$' "$case_dir/status.out"
  check "$label: status shows the record delivered" grep -q 'delivered 1' "$case_dir/status.out"
  local transactions
  transactions=$(transactions_of "$base")
  check "$label: the sandbox received the transaction" [ "${transactions:-0}" -eq "${delivered_to[$name]}" ]
}
for mode in system permissive; do
  accepted tls12_rsa "TLS 1.2, RSA-2048"
  accepted tls12_ec "TLS 1.2, ECDSA P-256"
  accepted tls13_rsa "TLS 1.3, RSA-2048"
  accepted tls13_ec "TLS 1.3, ECDSA P-256"
  accepted chain "chain, the server sends the intermediate"
done

echo "($SECONDS s)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
