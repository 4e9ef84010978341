#!/usr/bin/env bash
# npm run test:kernels — build, then boot Debian's 5.10 and 6.1 cloud kernels under
# qemu and check the BPF data path in each (test/kernels/kernels.test.ts).
# First run on a fresh machine: installs qemu-system-x86 + busybox-static and fetches
# the kernels through apt (cached in /var/cache/kmesh-test). Root required.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root: apt, qemu and BPF in the guests" >&2; exit 1; }
start=$(date +%s)
if [ "${KMESH_KERNELS_NO_BUILD:-0}" != 1 ]; then
  bash scripts/deps.sh
  [ -d node_modules ] || npm ci --no-audit --no-fund
  npm run build
fi
bash scripts/kernels/fetch.sh >/dev/null
node --test --test-concurrency=1 --test-reporter=spec dist/test/kernels/
echo "test:kernels: $(( $(date +%s) - start )) s in total"
