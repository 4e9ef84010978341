#!/usr/bin/env bash
# Build (or reuse) a Debian bookworm minbase rootfs with systemd for the end-to-end test.
# The rootfs is cached under $KMESH_E2E_CACHE (default /var/cache/kmesh-test/rootfs), keyed by a hash of the
# suite, mirror and package list, so a changed package list never reuses a stale tree.
# Prints the rootfs path on stdout; everything else goes to stderr.
set -euo pipefail

SUITE=${KMESH_E2E_SUITE:-bookworm}
MIRROR=${KMESH_E2E_MIRROR:-http://deb.debian.org/debian}
CACHE=${KMESH_E2E_CACHE:-/var/cache/kmesh-test/rootfs}
# systemd + dbus: the init and bus under test; libbpf1 + nodejs: the package's runtime dependencies (bookworm's
# nodejs is 18, which the package claims to support); bpftool: to check attachments/pins; iproute2/procps: debugging.
PACKAGES=${KMESH_E2E_PACKAGES:-systemd,systemd-sysv,dbus,libbpf1,nodejs,bpftool,iproute2,procps}

key=$(printf '%s\n%s\n%s\n' "$SUITE" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-16)
dir="$CACHE/$SUITE-$key"
if [[ -f "$dir/.kmesh-rootfs-complete" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$CACHE"
# Build beside the final place and rename, so an interrupted build never looks complete.
tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
echo "building $SUITE rootfs in $tmp (packages: $PACKAGES)" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" >&2

# Make the container boot quietly and quickly: no getty on the console, a fixed machine id is created at boot.
rm -f "$tmp/etc/machine-id"
: >"$tmp/etc/machine-id"
echo kmesh-e2e >"$tmp/etc/hostname"
chroot "$tmp" systemctl mask console-getty.service getty@tty1.service systemd-networkd-wait-online.service \
  >/dev/null 2>&1 || true
# An unprivileged user for the "non-root callers are refused" checks.
chroot "$tmp" useradd --create-home --shell /bin/bash kmeshtest >&2
touch "$tmp/.kmesh-rootfs-complete"
rm -rf --one-file-system "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
