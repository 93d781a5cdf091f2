#!/usr/bin/env bash
# Builds the Python agent plugin (guests/python-plugin) into a component with
# componentize-py, installed from PyPI (pinned) into target/py-venv on first
# use. Prints the path of the component. The tests run it through the same
# plugin runtime as the Rust plugins.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.25.1
venv=target/py-venv
stamp="$venv/componentize-py-$version"
out=target/py-plugins/checklist_agent.wasm
if [ ! -f "$stamp" ]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: python3 with the venv module is needed to build the Python plugin" >&2
    exit 1
  fi
  echo "==> installing componentize-py $version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
  touch "$stamp"
fi
if [ ! -f "$out" ] || [ -n "$(find guests/python-plugin wit "$stamp" "$0" -newer "$out" -print -quit)" ]; then
  echo "==> building the Python plugin" >&2
  mkdir -p "$(dirname "$out")"
  (cd guests/python-plugin &&
    "../../$venv/bin/componentize-py" -d ../../wit -w agent-plugin componentize app -o "../../$out" >&2)
fi
echo "$PWD/$out"
