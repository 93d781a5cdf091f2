#!/usr/bin/env bash
# Sets up the Node host (packages/node): its pinned npm dependencies (jco
# and the WASI shim, from the npm registry, by package-lock.json) and the
# JavaScript that jco transpiles from the session component. Needs the
# component built (cargo build --release -p agent-session-host). Prints the
# package's path.
set -euo pipefail
cd "$(dirname "$0")/../packages/node"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: Node.js 20.15 or newer (with npm) is needed for the Node host" >&2
  exit 1
fi
# The oldest Node the package declares (package.json engines) and is tested on.
ok=$(node -p 'const [a, b] = process.versions.node.split(".").map(Number); a > 20 || (a === 20 && b >= 15)')
if [ "$ok" != true ]; then
  echo "error: the Node host needs Node.js 20.15 or newer; this is $(node --version)" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing the Node host's npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
echo "==> transpiling the session component with jco" >&2
npm run --silent build >&2
echo "$PWD"
