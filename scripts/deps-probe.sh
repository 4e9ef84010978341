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
# The shared installer adds whichever of these are missing.
exec bash "$(dirname "$0")/deps.sh" "${PKGS[@]}"
