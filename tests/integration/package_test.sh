#!/usr/bin/env bash
# The Debian package as IT staff use it: built by deploy/package.sh (deploy/test.sh builds it
# first), inspected, installed with apt-get, its unit verified by systemd-analyze, its binary run
# from the installed paths as the service user with the installed configuration (edited as staff
# would) against the EHR sandbox, with the sd_notify readiness and watchdog seen on a socket;
# then removed (the store stays) and purged (everything goes, and it says so).
# Needs root (it installs a package); skipped (77) otherwise. Prints "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
deb=${1:-$(ls "$root"/build-package/migraine-connector_*.deb 2> /dev/null | head -1)}
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: installing a package needs root"; exit 77; fi
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
installed=no
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2> /dev/null
  [ -n "${listener:-}" ] && kill "$listener" 2> /dev/null
  stop_sandboxes
  [ "$installed" = yes ] && "${apt[@]}" purge migraine-connector > /dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
check "the package was built (deploy/package.sh)" test -f "$deb"
[ -f "$deb" ] || { echo "$passed passed, $failed failed"; exit 1; }
echo "package: $(basename "$deb")"

# What it holds and declares.
dpkg-deb -I "$deb" > "$work/info"
dpkg-deb -c "$deb" > "$work/contents"
check "named migraine-connector_<version>_<arch>.deb" bash -c "[[ '$(basename "$deb")' =~ ^migraine-connector_[0-9.]+_[a-z0-9]+\.deb$ ]]"
check "Depends from the linked libraries (dpkg-shlibdeps): OpenSSL" grep -q "Depends:.*libssl3" "$work/info"
check "... and SQLite" grep -q "Depends:.*libsqlite3-0" "$work/info"
for f in ./usr/bin/migraine-connector ./usr/share/migraine-connector/code-tables.json \
         ./usr/share/migraine-connector/clinic-record-v1.schema.json ./etc/migraine-connector/connector.jsonc \
         ./lib/systemd/system/migraine-connector.service ./usr/share/man/man1/migraine-connector.1.gz; do
  check "contains $f" grep -q " $f\$" "$work/contents"
done
check "the configuration is a conffile" bash -c "dpkg-deb --ctrl-tarfile '$deb' | tar -xO ./conffiles | grep -qx /etc/migraine-connector/connector.jsonc"

# A run killed mid-install (CI stopped, machine snapshotted) leaves dpkg interrupted and the
# package half there; apt-get then refuses everything. Finish dpkg's work and purge what is left,
# so this run starts from a machine without the package, as a clinic's would.
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -qq)
if [ -n "$(dpkg --audit 2> /dev/null)" ]; then
  echo "dpkg was interrupted before this run: dpkg --configure -a"
  dpkg --configure -a > "$work/configure.out" 2>&1 || cat "$work/configure.out"
fi
if dpkg-query -W -f='${Status}' migraine-connector 2> /dev/null | grep -qv "not-installed"; then
  echo "a migraine-connector package was left by an earlier run: purged first"
  "${apt[@]}" purge migraine-connector > "$work/leftover.out" 2>&1 || cat "$work/leftover.out"
fi

# Installed with apt-get, as the README says.
"${apt[@]}" install "$deb" > "$work/install.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] && installed=yes
check "apt-get install ./...deb (exit $rc)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || cat "$work/install.out"
check "... tells staff what to do next" grep -q "systemctl enable --now migraine-connector" "$work/install.out"
check "a system user" bash -c "getent passwd migraine-connector | grep -q nologin"
for d in /var/lib/migraine-connector /var/spool/migraine-connector/inbox /var/log/migraine-connector; do
  check "$d: owner-only, the service user's" [ "$(stat -c '%U %a' "$d")" = "migraine-connector 700" ]
done
check "the configuration: root's, readable by the service only" [ "$(stat -c '%U:%G %a' /etc/migraine-connector/connector.jsonc)" = "root:migraine-connector 640" ]
check "the man page" bash -c "man -l /usr/share/man/man1/migraine-connector.1.gz 2> /dev/null | grep -q 'exactly once'"
systemd-analyze verify /lib/systemd/system/migraine-connector.service > "$work/verify.out" 2>&1; rc=$?
check "systemd-analyze verify: clean (exit $rc)" [ "$rc" -eq 0 ] && ! grep -q . "$work/verify.out"
[ -s "$work/verify.out" ] && cat "$work/verify.out"
systemd-analyze security --offline=yes /lib/systemd/system/migraine-connector.service > "$work/security.out" 2>&1
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/security.out")
echo "systemd-analyze security: exposure $score"
check "systemd-analyze security: exposure rated OK or better" grep -Eq "exposure level .*: [0-9.]+ (OK|SAFE)" "$work/security.out"

# Staff edit the installed configuration for their EHR (here the sandbox) and start it.
start_main_sandbox || exit 1
install -m 0640 -g migraine-connector "$certs/ca.pem" "$certs/client.pem" "$certs/client.key" /etc/migraine-connector/
cat > /etc/migraine-connector/connector.jsonc <<JSON
{ "store": { "path": "/var/lib/migraine-connector/outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "/etc/migraine-connector/ca.pem",
           "client_cert_file": "/etc/migraine-connector/client.pem",
           "client_key_file": "/etc/migraine-connector/client.key", "timeout_seconds": 10 },
  "inbox": { "dir": "/var/spool/migraine-connector/inbox", "poll_ms": 200 },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "/var/log/migraine-connector/sync-log.jsonl" } }
JSON
check "config-check passes as the service user" \
  runuser -u migraine-connector -- /usr/bin/migraine-connector config-check --config /etc/migraine-connector/connector.jsonc
# The sd_notify socket systemd would give it, read with Perl (Debian's perl-base is essential).
notify=$work/notify.sock
perl -MSocket -e 'socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die; bind($s, pack_sockaddr_un($ARGV[0])) or die;
  chmod 0777, $ARGV[0]; $| = 1; while (defined recv($s, my $m, 4096, 0)) { print "$m\n" }' "$notify" > "$work/notify.out" &
listener=$!
wait_for 5 test -S "$notify"
chmod 0755 "$work"
# setpriv execs the daemon itself (runuser would stay in between and eat the signal's exit code).
setpriv --reuid migraine-connector --regid migraine-connector --clear-groups env NOTIFY_SOCKET="$notify" WATCHDOG_USEC=400000 \
  /usr/bin/migraine-connector run --config /etc/migraine-connector/connector.jsonc > "$work/run.out" 2> "$work/run.err" &
daemon=$!
check "READY=1 once the store is open and the listeners are bound" wait_for 20 grep -q "^READY=1" "$work/notify.out"
check "... the admin server answers by then" bash -c "
  url=\$(sed -n 's|.*admin API on \(http://[^ ]*\)/\$|\1|p' '$work/run.err' | head -1)
  [ \"\$(node '$root/tests/integration/https-request.mjs' GET \"\$url/healthz\" | head -1)\" = 200 ]"
two_pings() { [ "$(grep -c '^WATCHDOG=1' "$work/notify.out")" -ge 2 ]; }
check "WATCHDOG=1 pings from the event loop" wait_for 10 two_pings
sed "s/MRN-100234/MRN-PKG-1/; s/CONS-2026-0001/CONS-PKG-1/" "$root/mappings/examples/consultation.json" | tr -d '\n' > "$work/one.tmp"
echo >> "$work/one.tmp"
install -o migraine-connector -m 0600 "$work/one.tmp" /var/spool/migraine-connector/inbox/one.ndjson.tmp
mv /var/spool/migraine-connector/inbox/one.ndjson.tmp /var/spool/migraine-connector/inbox/one.ndjson
check "a record dropped in the installed inbox reaches the EHR" wait_for 30 bash -c "[ \"\$(node '$root/tests/integration/sandbox-ctl.mjs' '$BASE_main' '$certs' count Encounter)\" -ge 1 ]"
check "the store it made is owner-only" [ "$(stat -c '%U %a' /var/lib/migraine-connector/outbox.db)" = "migraine-connector 600" ]
kill "$daemon"; wait "$daemon"; rc=$?; daemon=""
check "SIGTERM: exits 0" [ "$rc" -eq 0 ]
check "STOPPING=1 on the way out" grep -q "^STOPPING=1" "$work/notify.out"

# Removed: the queue stays. Purged: everything goes, and it says what.
"${apt[@]}" remove migraine-connector > "$work/remove.out" 2>&1
check "remove: the binary is gone" [ ! -e /usr/bin/migraine-connector ]
check "remove: the store is kept" test -f /var/lib/migraine-connector/outbox.db
check "remove: the configuration is kept" test -f /etc/migraine-connector/connector.jsonc
"${apt[@]}" purge migraine-connector > "$work/purge.out" 2>&1
installed=no
check "purge: says what it deletes" grep -q "purge deletes the store" "$work/purge.out"
check "purge: the store is gone" [ ! -e /var/lib/migraine-connector ]
check "purge: the configuration is gone" [ ! -e /etc/migraine-connector ]
check "purge: the user is gone" bash -c "! getent passwd migraine-connector"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
