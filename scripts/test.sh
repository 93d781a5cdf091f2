#!/usr/bin/env bash
# Every test of the project: formatting, lints, core unit tests, the store's
# tests, and the integration tests that run the real component in wasmtime
# (through the Rust API and the CLI), plugins in Rust and in Python included. One profile (release) and one target
# directory are shared with the quick start, so nothing is built twice.
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

echo "==> cargo test"
cargo test --release --locked
