#!/usr/bin/env bash
# Generates the DEVELOPMENT / TEST certificates for the connector's mutual-TLS link to the EHR.
#
#   certs/make-dev-certs.sh OUT_DIR
#
# Never use these in production: see certs/README.md. Needs only the openssl CLI (Debian package
# "openssl", OpenSSL 3.0 or later). Keys are EC P-256, written with mode 0600.
#
# Idempotent: if OUT_DIR already holds a complete, consistent and unexpired set made by this version
# of the script, nothing is touched; otherwise the whole set is regenerated in a temporary directory
# inside OUT_DIR and then moved into place. Prints nothing except errors (exit status != 0 then).
#
# Files (all PEM):
#   ca.pem / ca.key                   development CA (signs everything below except other-*)
#   server.pem / server.key           server cert: DNS:localhost, IP:127.0.0.1, IP:::1 (serverAuth)
#   client.pem / client.key           client cert for the connector (clientAuth)
#   other-ca.pem / other-ca.key       a second, unrelated CA
#   other-server.pem / .key           server cert for localhost signed by other-ca (untrusted server)
#   other-client.pem / .key           client cert signed by other-ca (must be refused by the sandbox)
#   wrong-host.pem / .key             server cert from the dev CA for DNS:not-localhost.invalid only
#   expired.pem / .key                server cert from the dev CA for localhost/127.0.0.1, expired in 2020
set -euo pipefail

# Bump when the set of files or their contents change, so existing directories are regenerated.
readonly SET_VERSION=1
readonly CA_DAYS=3650
readonly LEAF_DAYS=825
readonly MIN_REMAINING_SECONDS=$((30 * 24 * 3600)) # regenerate when anything expires within 30 days

die() {
  echo "make-dev-certs: $*" >&2
  exit 1
}

[[ $# -eq 1 && -n "$1" ]] || die "usage: $0 OUT_DIR"
command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian: apt-get install openssl)"

out=$1
mkdir -p -- "$out" || die "cannot create $out"
out=$(cd -- "$out" && pwd -P)

readonly FILES=(ca.pem ca.key server.pem server.key client.pem client.key
  other-ca.pem other-ca.key other-server.pem other-server.key other-client.pem other-client.key
  wrong-host.pem wrong-host.key expired.pem expired.key)

# ---------------------------------------------------------------------------------------------------
# Up to date already?
# ---------------------------------------------------------------------------------------------------
up_to_date() {
  local f
  [[ "$(cat -- "$out/.dev-certs-version" 2>/dev/null)" == "$SET_VERSION" ]] || return 1
  for f in "${FILES[@]}"; do [[ -s "$out/$f" ]] || return 1; done
  openssl verify -CAfile "$out/ca.pem" "$out/server.pem" "$out/client.pem" "$out/wrong-host.pem" >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$out/other-ca.pem" "$out/other-server.pem" "$out/other-client.pem" >/dev/null 2>&1 || return 1
  # Not expiring soon (except expired.pem, of course), and each key belongs to its certificate
  for f in ca server client other-ca other-server other-client wrong-host expired; do
    local check=(-checkend "$MIN_REMAINING_SECONDS")
    [[ $f == expired ]] && check=()
    local cert_out key_pub
    cert_out=$(openssl x509 -in "$out/$f.pem" -noout -pubkey "${check[@]}" 2>/dev/null) || return 1
    key_pub=$(openssl pkey -in "$out/$f.key" -pubout 2>/dev/null) || return 1
    [[ -n $key_pub && "$(sed -n '/-----BEGIN PUBLIC KEY-----/,/-----END PUBLIC KEY-----/p' <<<"$cert_out")" == "$key_pub" ]] \
      || return 1
  done
  return 0
}

if up_to_date; then
  exit 0
fi

# ---------------------------------------------------------------------------------------------------
# Generate a fresh set in a private temporary directory, then move it into place
# ---------------------------------------------------------------------------------------------------
umask 077
work=$(mktemp -d "$out/.make-dev-certs.XXXXXX") || die "cannot create a temporary directory in $out"
log="$work/openssl.log"
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT

# Runs openssl quietly; on failure prints its output and stops.
ossl() {
  if ! openssl "$@" >>"$log" 2>&1; then
    echo "make-dev-certs: openssl $1 failed:" >&2
    cat -- "$log" >&2
    exit 1
  fi
}

newkey() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$work/$1.key"; }
serial() { echo "0x$(openssl rand -hex 16)"; }

cat >"$work/ext.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1

[wrong_host]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = DNS:not-localhost.invalid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

# make_ca NAME CN
make_ca() {
  newkey "$1"
  ossl req -new -x509 -sha256 -days "$CA_DAYS" -key "$work/$1.key" -out "$work/$1.pem" \
    -subj "/O=migraine-connector development/CN=$2" -set_serial "$(serial)" \
    -config "$work/ext.cnf" -extensions ca
}

# make_leaf NAME CA_NAME EXT_SECTION CN
make_leaf() {
  newkey "$1"
  ossl req -new -sha256 -key "$work/$1.key" -out "$work/$1.csr" -subj "/O=migraine-connector development/CN=$4" \
    -config "$work/ext.cnf"
  ossl x509 -req -sha256 -days "$LEAF_DAYS" -in "$work/$1.csr" -CA "$work/$2.pem" -CAkey "$work/$2.key" \
    -set_serial "$(serial)" -extfile "$work/ext.cnf" -extensions "$3" -out "$work/$1.pem"
}

# An expired server certificate from the dev CA. `openssl x509` in OpenSSL 3.0 cannot set a start date
# in the past, `openssl ca` can (-startdate/-enddate), with a throwaway configuration and database.
make_expired() {
  newkey expired
  ossl req -new -sha256 -key "$work/expired.key" -out "$work/expired.csr" \
    -subj "/O=migraine-connector development/CN=localhost (expired)" -config "$work/ext.cnf"
  mkdir -p "$work/ca-db"
  : >"$work/ca-db/index.txt"
  openssl rand -hex 16 >"$work/ca-db/serial"
  cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = dev_ca

[dev_ca]
dir = $work/ca-db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $work/ca.pem
private_key = $work/ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
organizationName = optional
commonName = supplied

[expired_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EOF
  ossl ca -batch -notext -config "$work/ca.cnf" -extensions expired_server \
    -startdate 20200101000000Z -enddate 20200201000000Z -in "$work/expired.csr" -out "$work/expired.pem"
}

make_ca ca "migraine-connector DEV CA (not for production)"
make_leaf server ca server localhost
make_leaf client ca client "migraine-connector dev client"
make_leaf wrong-host ca wrong_host not-localhost.invalid
make_expired
make_ca other-ca "unrelated OTHER CA (negative tests)"
make_leaf other-server other-ca server localhost
make_leaf other-client other-ca client "client of the other CA"

# Sanity checks before anything is moved into place
openssl verify -CAfile "$work/ca.pem" "$work/server.pem" "$work/client.pem" "$work/wrong-host.pem" >>"$log" 2>&1 \
  || { cat -- "$log" >&2; die "verification of the generated certificates failed"; }
openssl verify -CAfile "$work/other-ca.pem" "$work/other-server.pem" "$work/other-client.pem" >>"$log" 2>&1 \
  || { cat -- "$log" >&2; die "verification of the generated other-CA certificates failed"; }
if openssl x509 -in "$work/expired.pem" -noout -checkend 0 >/dev/null 2>&1; then
  die "expired.pem is not expired"
fi

chmod 600 "$work"/*.key
chmod 644 "$work"/*.pem
rm -f -- "$out/.dev-certs-version"
for f in "${FILES[@]}"; do
  mv -f -- "$work/$f" "$out/$f"
done
echo "$SET_VERSION" >"$work/.dev-certs-version"
chmod 644 "$work/.dev-certs-version"
mv -f -- "$work/.dev-certs-version" "$out/.dev-certs-version"
