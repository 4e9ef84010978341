#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, run the daemon on the embedded demo config.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (sudo npm run demo): the demo loads BPF programs" >&2; exit 1; }
bash scripts/deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build
exec node dist/demo/run.js "$@"
