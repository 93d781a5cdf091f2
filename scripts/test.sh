#!/usr/bin/env bash
# Every test of the project: formatting, lints, core unit tests, the store's
# tests, the integration tests that run the real component in wasmtime
# (through the Rust API and the CLI, plugins in Rust and in Python
# included), the PostgreSQL store against a real server, and the same
# component in Node (jco) and Python (wasmtime-py): the conformance suite on
# every host and store, whose results must agree. One
# profile (release) and one target directory are shared with the quick
# start, so nothing is built twice.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "==> installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --release --locked --workspace --all-targets -- -D warnings

# The plugin written in Python (componentize-py, from PyPI) for the plugin
# runtime's tests.
AGENT_SESSION_PY_PLUGIN="$(./scripts/python-plugin.sh)"
export AGENT_SESSION_PY_PLUGIN

echo "==> building the session component and the host"
cargo build --release --locked -p agent-session-host

# The other hosts of the same component, for the cross-host test and their
# own conformance runners.
AGENT_SESSION_NODE_PKG="$(./scripts/node-host.sh)"
AGENT_SESSION_PYTHON="$(./scripts/python-host.sh)"
export AGENT_SESSION_NODE_PKG AGENT_SESSION_PYTHON

# A throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL store's
# tests (installed from Debian's packages when absent), stopped on exit.
# Every process the tests start inherits this mark, by which the exit check
# tells them from other builds and runs in the same target/.
AGENT_SESSION_TEST_RUN="$$.$(date +%s%N)"
export AGENT_SESSION_TEST_RUN
# The server is this run's own (by name), so that another run in the same
# checkout neither stops it nor is stopped by it.
pg_name="test-$AGENT_SESSION_TEST_RUN"
# On exit, after stopping the server, nothing the tests started may still
# run: scripts/leftovers.sh lists and ends any such process (a server in the
# server's temporary folder, any process carrying the run's mark) and then
# fails, and so does the run; a run that failed already keeps its own
# status.
on_exit() {
  local rc=$? pg_dir
  # The server's temporary folder, read before stop removes its record.
  pg_dir=$(cat "target/pg-$pg_name.dir" 2>/dev/null || true)
  ./scripts/postgres.sh stop "$pg_name" || { [ "$rc" != 0 ] || rc=1; }
  ./scripts/leftovers.sh -r "$AGENT_SESSION_TEST_RUN" "$pg_dir" || { [ "$rc" != 0 ] || rc=1; }
  exit "$rc"
}
trap on_exit EXIT
AGENT_SESSION_TEST_POSTGRES="$(./scripts/postgres.sh start "$pg_name")"
# The CA of its TLS certificate.
AGENT_SESSION_TEST_POSTGRES_CA="$PWD/target/pg-$pg_name.ca.pem"
export AGENT_SESSION_TEST_POSTGRES AGENT_SESSION_TEST_POSTGRES_CA

# Every conformance runner writes its transcript here; compare.py checks
# that they agree.
AGENT_SESSION_CONFORMANCE_OUT="$PWD/target/conformance"
export AGENT_SESSION_CONFORMANCE_OUT
rm -rf "$AGENT_SESSION_CONFORMANCE_OUT"

echo "==> cargo test"
cargo test --release --locked

echo "==> Node host: node --test (conformance through jco, the Node store)"
(cd packages/node && npm test)

echo "==> Python host: pytest (conformance through wasmtime-py, the Python store)"
"$AGENT_SESSION_PYTHON" -m pytest -q packages/python/tests

echo "==> every host and store agrees"
python3 tests/conformance/compare.py "$AGENT_SESSION_CONFORMANCE_OUT"
