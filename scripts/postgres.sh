#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: `scripts/postgres.sh start
# [NAME]` makes a new data directory (under /tmp), starts the server on
# 127.0.0.1 on a free port, and prints its connection URL; `scripts/
# postgres.sh stop [NAME]` stops it and removes the data. NAME (default
# "test") lets the benchmarks have a server of their own. Debian's postgresql package is installed
# when no server is found. As root (as on CI), the server runs as the
# `postgres` user the package made: PostgreSQL refuses to run as root.
# The server also takes TLS connections, with a certificate for 127.0.0.1
# from a throwaway CA written to target/pg-NAME.ca.pem.
set -euo pipefail
cd "$(dirname "$0")/.."

state="target/pg-${2:-test}.dir"
ca="target/pg-${2:-test}.ca.pem"
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  if [ -f "$state" ]; then
    data=$(cat "$state")
    bin=$(find_bin)
    if [ -n "$bin" ] && [ -f "$data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$data" "$state" "$ca"
  fi
}

case "${1:-}" in
  stop)
    stop
    ;;
  start)
    stop
    bin=$(find_bin)
    if [ -z "$bin" ]; then
      echo "==> installing PostgreSQL (Debian's postgresql package)" >&2
      if [ "$(id -u)" != 0 ]; then
        echo "error: PostgreSQL is not installed and installing it needs root: apt-get install postgresql" >&2
        exit 1
      fi
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      bin=$(find_bin)
    fi
    mkdir -p target
    data=$(mktemp -d /tmp/agent-session-pg.XXXXXX)
    echo "$data" >"$state"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    as_owner "$bin/initdb" -D "$data/db" -A trust -U agent --no-sync >/dev/null
    tls="$data/tls"
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=agent-session test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 2 -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
    chmod 600 "$tls/server.key"
    [ "$(id -u)" = 0 ] && chown -R postgres "$tls"
    cp "$tls/ca.crt" "$ca"
    # PostgreSQL cannot bind port 0, so a free port is probed first; another
    # process may take it before the server binds it, hence the retries.
    for try in 1 2 3 4 5; do
      port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      echo "==> starting PostgreSQL ($("$bin/postgres" --version | awk '{print $3}')) on 127.0.0.1:$port" >&2
      # A fresh log per try, so that only this try's failure is judged.
      rm -f "$data/db/server.log"
      if as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/db/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data/db -c max_connections=200 -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" \
        start >/dev/null; then
        break
      fi
      if [ "$try" = 5 ] || ! grep -q "could not bind" "$data/db/server.log"; then
        echo "error: PostgreSQL did not start; its log:" >&2
        tail -20 "$data/db/server.log" >&2
        exit 1
      fi
      echo "==> port $port was taken meanwhile; trying another" >&2
    done
    echo "postgres://agent@127.0.0.1:$port/postgres"
    ;;
  *)
    echo "usage: $0 start|stop [NAME]" >&2
    exit 2
    ;;
esac
