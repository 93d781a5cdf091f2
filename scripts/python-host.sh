#!/usr/bin/env bash
# Sets up the Python host (packages/python): a virtual environment in
# target/py-host-venv with its pinned requirements (wasmtime-py and pytest,
# from PyPI), made again when requirements.txt changes, and the session
# components (cargo build --release -p agent-session-host builds them) copied
# into the package, where the package and its wheel find it. Prints the
# path of the environment's python.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-host-venv
req=packages/python/requirements.txt
if ! cmp -s "$req" "$venv/requirements.txt"; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: python3 (3.11 or newer) with the venv module is needed for the Python host" >&2
    exit 1
  fi
  echo "==> installing the Python host's requirements into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/requirements.txt"
fi
# The session-on-root component (directories) and the session component
# that imports store and notify (PostgreSQL, agent_session/_postgres.py).
for name in agent_session_on_root.wasm agent_session_guest.wasm; do
  wasm=target/wasm-guest/wasm32-wasip2/release/$name
  packaged=packages/python/agent_session/component/$name
  if [ ! -f "$wasm" ]; then
    echo "error: $wasm is not built; run cargo build --release -p agent-session-host first" >&2
    exit 1
  fi
  # Only when changed, so its mtime (the package's per-process key) stays; by
  # rename, so a running process never reads half a file.
  if ! cmp -s "$wasm" "$packaged"; then
    mkdir -p "$(dirname "$packaged")"
    cp "$wasm" "$packaged.tmp"
    mv -f "$packaged.tmp" "$packaged"
  fi
done

echo "$PWD/$venv/bin/python"
