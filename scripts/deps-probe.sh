#!/usr/bin/env bash
# Debian packages for kmesh-probe's tests and bench: the build toolchain for the BPF
# object and the bench's C load generator, a real Prometheus, promtool.
# Idempotent: installs only what is missing. Run as root.
set -euo pipefail
PKGS=(
  clang       # bpf/kmesh_probe.bpf.c -> build/bpf/kmesh_probe.bpf.o
  llvm
  libbpf-dev  # bpf_helpers.h, bpf_endian.h
  libbpf1     # ring_buffer__*, bpf_obj_get_info_by_fd through koffi
  bpftool     # test/unit/probe-btf.test.ts reads BTF with it
  gcc         # bench/probe/connrate.c
  libc6-dev
  prometheus  # test/kernel/probe-prometheus.test.ts scrapes /metrics; ships promtool
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "deps-probe: all present"
  exit 0
fi
echo "deps-probe: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
