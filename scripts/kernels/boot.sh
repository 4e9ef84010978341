#!/usr/bin/env bash
# Boot one cached Debian kernel with the kmesh initramfs under qemu; the serial
# console goes to stdout. usage: boot.sh SERIES [extra kernel args...]
# Env: KMESH_QEMU_TIMEOUT (s, default 240), KMESH_QEMU_ACCEL=tcg|kvm (default tcg), KMESH_QEMU_MEM (MiB)
set -euo pipefail
CACHE=${KMESH_KERNEL_CACHE:-/var/cache/kmesh-test/kernels}
INITRD=${KMESH_INITRAMFS:-$(dirname "$CACHE")/initramfs.cpio}
series=$1; shift
rel=$(cat "$CACHE/$series.release")
kernel="$CACHE/vmlinuz-$rel"
# TCG by default: on this machine kind /dev/kvm exists but nested KVM does not work
# (-cpu host: "failed to set MSR 0x10a"; -cpu max/kvm64: the guest hangs in early boot).
# KMESH_QEMU_ACCEL=kvm opts in where KVM is known to work. Under TCG the plain qemu64
# CPU model is used: with -cpu max node/V8 takes AVX paths that TCG emulates slowly
# (the guest's verifier step measured 1.6-1.9 s vs 3.2-3.4 s).
accel=${KMESH_QEMU_ACCEL:-tcg}
if [ "$accel" = kvm ] && ! { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }; then accel=tcg; fi
if [ "$accel" = kvm ]; then acc=(-enable-kvm -cpu ${KMESH_QEMU_CPU:-max}); else acc=(-accel tcg -cpu "${KMESH_QEMU_CPU:-qemu64}"); fi
echo "KMESH-QEMU series=$series kernel=$rel accel=$accel" >&2
exec timeout --foreground -k 5 "${KMESH_QEMU_TIMEOUT:-240}" \
  qemu-system-x86_64 "${acc[@]}" -smp 2 -m "${KMESH_QEMU_MEM:-1536}" \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none \
  -kernel "$kernel" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init $*"
