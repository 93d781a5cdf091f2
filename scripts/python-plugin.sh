#!/usr/bin/env bash
# Builds the Python agent plugin (guests/python-plugin) into a component with
# componentize-py, installed from PyPI (pinned) into target/py-venv on first
# use. Prints the path of the component. The tests run it through the same
# plugin runtime as the Rust plugins.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-venv
out=target/py-plugins/checklist_agent.wasm
if [ ! -x "$venv/bin/componentize-py" ]; then
  echo "==> installing componentize-py into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
fi
if [ ! -f "$out" ] || [ -n "$(find guests/python-plugin wit -newer "$out" -print -quit)" ]; then
  echo "==> building the Python plugin" >&2
  mkdir -p "$(dirname "$out")"
  (cd guests/python-plugin &&
    "../../$venv/bin/componentize-py" -d ../../wit -w agent-plugin componentize app -o "../../$out" >&2)
fi
echo "$PWD/$out"
