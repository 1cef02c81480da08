#!/usr/bin/env bash
# Installs what building and testing the connector needs on Debian 12, and nothing twice:
# Debian packages only when one is missing, the Node test tooling only when its lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: compiler, CMake, RapidJSON (JSON), SQLite (the outbox), libpq (the outbox shared by
# several instances, on PostgreSQL), OpenSSL (TLS, keyed patient
# hashes), Boost 1.81 headers (Asio/Beast: the HTTPS client), GoogleTest. Tests: the openssl tool
# (certificates made at test time), the sqlite3 tool (tests read the store), Node.js + npm
# (FHIR validator, JSON Schema check, EHR sandbox, benchmark baseline), Chromium and a font (the
# status page tested in a real browser, driven by playwright-core from npm).
packages=(g++ cmake make rapidjson-dev libsqlite3-dev sqlite3 libssl-dev openssl libboost1.81-dev libgtest-dev
          libgmock-dev ca-certificates chromium fonts-dejavu-core
          dpkg-dev adduser systemd  # the Debian package: dpkg-shlibdeps, its maintainer scripts, systemd-analyze
          libpq-dev postgresql)     # the shared outbox (store.kind postgresql) and its throwaway test cluster
# deploy/install-deps.sh --fuzz: also clang 14 with libFuzzer and libc++ (tests/fuzz/run.sh).
[ "${1:-}" = --fuzz ] && packages+=(clang-14 libclang-rt-14-dev libc++-14-dev libc++abi-14-dev)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node test tooling, pinned by tests/node/package-lock.json.
stamp=tests/node/node_modules/.installed-lock
if ! cmp -s tests/node/package-lock.json "$stamp" 2>/dev/null; then
  echo "install-deps: installing Node test tooling (npm ci)"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/node/package-lock.json "$stamp"
fi
