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

# Whether process $1 belongs to the cluster in directory $2: the postmaster
# and its children run in the data directory, so their working directory
# tells (shown with " (deleted)" once the directory is gone). This guards
# against a stale postmaster.pid whose pid was reused by another process.
in_cluster() {
  local cwd
  cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || return 1
  [ "${cwd% (deleted)}" = "$2" ]
}

# Waits up to $2 seconds for process $1 to end; fails if it has not.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

# Stops the server of NAME and removes its data. Safe to call twice and
# after a start that failed half way (no state, no cluster, no pid file or
# no running server are all fine). The data is removed only once the server
# is known to be gone: removing it under a running server would leave that
# server running with nothing to stop it by.
stop() {
  [ -f "$state" ] || return 0
  local data db pid="" bin
  data=$(cat "$state")
  # The cluster is in db/ of the temporary directory (see start).
  db=$(realpath -m "$data/db")
  if [ -f "$db/postmaster.pid" ]; then
    pid=$(head -1 "$db/postmaster.pid" 2>/dev/null || true)
  fi
  if [[ "$pid" =~ ^[0-9]+$ ]] && in_cluster "$pid" "$db"; then
    bin=$(find_bin)
    # Fast shutdown (disconnects clients), bounded by pg_ctl's own timeout.
    if [ -z "$bin" ] || ! as_owner "$bin/pg_ctl" -D "$db" -m fast -w -t 20 stop >/dev/null ||
      ! wait_gone "$pid" 5; then
      echo "==> pg_ctl did not stop PostgreSQL (pid $pid); killing it" >&2
      # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster ends its
      # children itself. SIGKILL (to it and its children) if even that hangs.
      kill -QUIT "$pid" 2>/dev/null || true
      if ! wait_gone "$pid" 10; then
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
      fi
    fi
    if kill -0 "$pid" 2>/dev/null; then
      # Keep the data and the state, so that a later stop can try again.
      echo "error: PostgreSQL (pid $pid, $db) is still running; its data is kept" >&2
      return 1
    fi
  fi
  rm -rf "$data" "$state" "$ca"
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
