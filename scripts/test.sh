#!/usr/bin/env bash
# The whole test suite on a fresh machine: dependencies, build, type-check, lint, unit and kernel tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the kernel tests load BPF programs" >&2; exit 1; }
bash scripts/deps.sh
for extra in scripts/deps-*.sh; do [ -f "$extra" ] && bash "$extra"; done
npm ci --no-audit --no-fund
npm run build
npm run typecheck
npm run lint
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
node --test --test-concurrency=1 --test-reporter=spec \
  dist/test/unit/ dist/test/kernel/ $( [ -d dist/test/e2e ] && echo dist/test/e2e/ ) $( [ -d dist/test/kernels ] && echo dist/test/kernels/ )
