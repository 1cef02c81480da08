#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: tests/pg/cluster.sh start|stop DIR.
# Debian's postgresql server binaries, run as an unprivileged user (postgres when started by
# root, else the caller), listening on no TCP port, only on a Unix socket in DIR/socket; password
# authentication (scram-sha-256) for the role "connector", which owns the database "migraine".
# start writes DIR/conninfo (a libpq connection string, no password) and DIR/password.
set -euo pipefail
action=${1:?start or stop}
dir=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "cluster.sh: no PostgreSQL server (apt-get install postgresql)"; exit 1; }
as=()
[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
port=54329

if [ "$action" = stop ]; then
  [ -f "$dir/data/postmaster.pid" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop > /dev/null
  exit 0
fi

# A cluster left by an earlier run is stopped and made again: every run starts from nothing.
[ -f "$dir/data/postmaster.pid" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop > /dev/null 2>&1 || true
rm -rf "$dir/data" "$dir/socket"
mkdir -p "$dir/data" "$dir/socket"
openssl rand -hex 16 > "$dir/password"
chmod 0600 "$dir/password"
[ "$(id -u)" -eq 0 ] && chown postgres "$dir/data" "$dir/socket" && chmod 0711 "$dir"
cp "$dir/password" "$dir/superuser-password"
[ "$(id -u)" -eq 0 ] && chown postgres "$dir/superuser-password"
"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/superuser-password" \
  -E UTF8 --locale=C.UTF-8 > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; exit 1; }
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir/socket'
port = $port
max_connections = 200
CONF
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w start > /dev/null || { cat "$dir/data/server.log"; exit 1; }
PGPASSWORD=$(cat "$dir/password") psql -q -h "$dir/socket" -p $port -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE connector LOGIN PASSWORD '$(cat "$dir/password")'" -c "CREATE DATABASE migraine OWNER connector"
echo "host=$dir/socket port=$port dbname=migraine user=connector" > "$dir/conninfo"
echo "cluster.sh: PostgreSQL on $dir/socket (port $port)"
