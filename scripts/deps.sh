#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Kmesh. Idempotent.
set -euo pipefail
need=()
for pkg in clang llvm libbpf-dev libbpf1 libelf-dev bpftool iproute2 make curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
for extra in "$@"; do
  dpkg-query -W -f='${Status}' "$extra" 2>/dev/null | grep -q "ok installed" || need+=("$extra")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
