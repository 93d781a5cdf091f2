#!/usr/bin/env bash
# Quick start: build the session component and the host, then run a real
# session lifecycle in the default directory (./.agent-sessions).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "==> installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "==> building the component and the host (release; the first build takes a few minutes)"
cargo build --release --locked -p agent-session-host

bin=target/release/agent-session
run() { echo "\$ agent-session $*"; "$bin" "$@"; echo; }

echo "==> a session lifecycle in ./.agent-sessions"
id=$("$bin" start "Quick start: implement feature X" --mode developer --user demo --channel cli --max-iterations 10 --context '{"repo":"agent-session"}' --quiet)
echo "started session $id"; echo
run iterate "$id" --data '{"step":"plan"}'
run tool-call "$id" --name "cargo test" --input '{"args":["--release"]}' --output '{"passed":42}' --duration-ms 1234
run learn "$id" "the store fsyncs the directory after a rename" --file NOTES.md
run pause "$id" --reason "waiting for review"
run resume "$id"
run iterate "$id" --data '{"step":"implement"}'
run complete "$id" --result '{"pr":1}'
run events "$id"
run stats
run list
