#!/usr/bin/env bash
# Build the initramfs the compatibility guests boot: busybox-static, the host's node
# and the shared libraries it and libbpf need, the project's dist/, production
# node_modules and build/bpf/*.o, and /init (scripts/kernels/guest-init.sh).
#
# usage: initramfs.sh [OUT]   (default $KMESH_KERNEL_CACHE/../initramfs.cpio)
# The archive is uncompressed on purpose: unpacking gzip under TCG costs seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${KMESH_KERNEL_CACHE:-/var/cache/kmesh-test/kernels}
OUT=${1:-$(dirname "$CACHE")/initramfs.cpio}
log() { echo "[kernels/initramfs] $*" >&2; }

[ -x /bin/busybox ] || { log "busybox-static missing (run scripts/kernels/fetch.sh)"; exit 1; }
NODE=$(command -v node)
# No early exit in awk: ldconfig would die of SIGPIPE, which pipefail turns into a failure.
LIBBPF=$(ldconfig -p | awk '/libbpf\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
[ -n "$LIBBPF" ] || { log "libbpf.so.1 not found (apt-get install libbpf1)"; exit 1; }
[ -d "$ROOT/dist" ] || { log "dist/ missing: run npm run build first"; exit 1; }

STAGE=$(mktemp -d /tmp/kmesh-initramfs.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,kmesh,var}
ln -s /run "$STAGE/var/run"
cp /bin/busybox "$STAGE/bin/busybox"
# copy a file to the same path inside the stage, following symlinks, keeping the link name too
copy_lib() {
  local f=$1 real
  real=$(readlink -f "$f")
  mkdir -p "$STAGE$(dirname "$real")" "$STAGE$(dirname "$f")"
  [ -e "$STAGE$real" ] || cp "$real" "$STAGE$real"
  [ "$f" = "$real" ] || [ -e "$STAGE$f" ] || ln -s "$real" "$STAGE$f"
}
libs_of() { ldd "$1" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}'; }

cp "$NODE" "$STAGE/usr/bin/node"
bins=("$NODE" "$LIBBPF")
# A system bus in the guest, as on any systemd VM: the daemon serves its D-Bus API there.
if [ -x /usr/bin/dbus-daemon ]; then
  cp /usr/bin/dbus-daemon "$STAGE/usr/bin/dbus-daemon"
  bins+=(/usr/bin/dbus-daemon)
  mkdir -p "$STAGE/etc/dbus-1"
  cat > "$STAGE/etc/dbus-1/kmesh-guest-system.conf" <<'CONF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
CONF
fi
printf 'root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/run/dbus:/bin/false\n' > "$STAGE/etc/passwd"
printf 'root:x:0:\nmessagebus:x:101:\n' > "$STAGE/etc/group"
for bin in "${bins[@]}"; do
  copy_lib "$bin"
  for l in $(libs_of "$bin"); do copy_lib "$l"; done
done
# libbpf is dlopen()ed by name ("libbpf.so.1"); give the guest a loader cache.
mkdir -p "$STAGE/etc"
printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' > "$STAGE/etc/ld.so.conf"
ldconfig -r "$STAGE" 2>/dev/null || true

# The project: what a package ships (dist/, build/bpf/*.o, package.json), production deps only.
P="$STAGE/kmesh"
cp "$ROOT/package.json" "$P/"
cp -a "$ROOT/dist" "$P/dist"
mkdir -p "$P/build/bpf"
cp "$ROOT"/build/bpf/*.o "$P/build/bpf/" 2>/dev/null || log "warning: no build/bpf/*.o"
( cd "$ROOT" && npm ls --omit=dev --parseable --all 2>/dev/null || true ) | while read -r dir; do
  rel=${dir#"$ROOT"/}
  [ "$rel" = "$dir" ] && continue            # the project itself
  case $rel in node_modules/*) ;; *) continue ;; esac
  [ -d "$dir" ] || continue
  mkdir -p "$P/$(dirname "$rel")"
  # nested node_modules are listed on their own; copy each package without them
  mkdir -p "$P/$rel"
  (cd "$dir" && tar --exclude=./node_modules -cf - .) | (cd "$P/$rel" && tar -xf -)
done
# koffi ships prebuilds for every platform; the guest is glibc x86-64.
rm -rf "$P"/node_modules/@koromix/koffi-linux-x64/musl_x64 2>/dev/null || true

install -m 0755 "$ROOT/scripts/kernels/guest-init.sh" "$STAGE/init"

mkdir -p "$(dirname "$OUT")"
( cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet ) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "$(du -h "$OUT" | cut -f1) $OUT"
echo "$OUT"
