#!/usr/bin/env bash
# Fetch the Debian cloud kernels the compatibility tests boot (5.10 from bullseye,
# 6.1 from bookworm) and the host tools to boot them (qemu-system-x86, busybox-static).
#
# Kernels come through apt from the same Debian archive the machine already uses,
# with a private apt state (own sources, own lists dir) so the host's apt config is
# not changed. The vmlinuz files are cached; a second run does no network I/O.
#
# Output: $KMESH_KERNEL_CACHE/vmlinuz-<release> and $KMESH_KERNEL_CACHE/<series>.release
# (series = 5.10 | 6.1). Prints the cache dir.
set -euo pipefail

CACHE=${KMESH_KERNEL_CACHE:-/var/cache/kmesh-test/kernels}
SERIES=${KMESH_KERNEL_SERIES:-"5.10 6.1"}
mkdir -p "$CACHE"

log() { echo "[kernels/fetch] $*" >&2; }

# --- host tools ------------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs+=(qemu-system-x86)
# busybox must be the static build: it runs inside the guest without any libc.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  need_pkgs+=(busybox-static)
fi
command -v cpio >/dev/null 2>&1 || need_pkgs+=(cpio)
# a system bus inside the guest, as on any systemd VM (the daemon's D-Bus API uses it)
[ -x /usr/bin/dbus-daemon ] || need_pkgs+=(dbus-daemon)
command -v dpkg-deb >/dev/null 2>&1 || need_pkgs+=(dpkg)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

# --- which kernels are already cached --------------------------------------
missing=()
for s in $SERIES; do
  if [ -f "$CACHE/$s.release" ] && [ -f "$CACHE/vmlinuz-$(cat "$CACHE/$s.release")" ]; then
    log "$s: cached $(cat "$CACHE/$s.release")"
  else
    missing+=("$s")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then echo "$CACHE"; exit 0; fi

# --- private apt state -------------------------------------------------------
# Same archive URIs as the machine's bookworm entries; bullseye added beside them.
APTDIR="$CACHE/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial"
src_uri() {  # $1 = suite to look for; prints first matching URI from the host's apt sources
  local want=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$want" '
      BEGIN{RS=""; FS="\n"}
      { uri=""; hit=0
        for(i=1;i<=NF;i++){
          if($i ~ /^URIs:/){ sub(/^URIs:[ \t]*/,"",$i); split($i,a,/[ \t]+/); uri=a[1] }
          if($i ~ /^Suites:/){ n=split($i,s,/[ \t]+/); for(j=2;j<=n;j++) if(s[j]==want) hit=1 }
        }
        if(hit && uri!=""){ print uri; exit } }' "$f"
  done | sed -n 1p || true
  grep -hE "^deb[[:space:]]+[^ ]+[[:space:]]+$want[[:space:]]" /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '{print $2}' | sed -n 1p || true
}
MAIN_URI=$(src_uri bookworm | sed -n 1p)
SEC_URI=$(src_uri bookworm-security | sed -n 1p)
MAIN_URI=${MAIN_URI:-http://deb.debian.org/debian}
SEC_URI=${SEC_URI:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$APTDIR/kmesh-kernels.sources" <<SRC
Types: deb
URIs: $MAIN_URI
Suites: bookworm bullseye
Components: main
Architectures: amd64
Signed-By: $KEYRING

Types: deb
URIs: $SEC_URI
Suites: bookworm-security bullseye-security
Components: main
Architectures: amd64
Signed-By: $KEYRING
SRC
APT_OPTS=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$APTDIR/sparts"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::Cache::Archives=$APTDIR/archives"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root" -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64"
)
mkdir -p "$APTDIR/sparts"
cp "$APTDIR/kmesh-kernels.sources" "$APTDIR/sparts/"
log "apt-get update (private lists in $APTDIR, archive $MAIN_URI)"
apt-get "${APT_OPTS[@]}" update -qq >&2

for s in "${missing[@]}"; do
  case $s in
    5.10) re='^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$' ;;
    6.1)  re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
    6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;  # optional: bookworm-security
    *) log "unknown series $s"; exit 2 ;;
  esac
  # Newest first; a mirror may list a package whose file it no longer serves, so
  # fall back to the next one.
  mapfile -t cands < <(apt-cache "${APT_OPTS[@]}" pkgnames linux-image- | grep -E "$re" | sort -rV)
  [ ${#cands[@]} -gt 0 ] || { log "$s: no package matches $re"; exit 1; }
  tmp=$(mktemp -d); chmod 755 "$tmp"; deb=""
  for pkg in "${cands[@]}"; do
    log "$s: downloading $pkg"
    if ( cd "$tmp" && apt-get "${APT_OPTS[@]}" download -qq "$pkg" >&2 ); then
      deb=$(ls "$tmp"/*.deb); break
    fi
    log "$s: $pkg not downloadable, trying the next one"
  done
  [ -n "$deb" ] || { rm -rf "$tmp"; log "$s: no kernel package could be downloaded"; exit 1; }
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './boot/config-*'
  rel=$(basename "$(ls "$tmp"/boot/vmlinuz-*)"); rel=${rel#vmlinuz-}
  cp "$tmp/boot/vmlinuz-$rel" "$CACHE/vmlinuz-$rel"
  cp "$tmp"/boot/config-"$rel" "$CACHE/config-$rel" 2>/dev/null || true
  dpkg-deb -f "$deb" Version > "$CACHE/$s.version"
  echo "$rel" > "$CACHE/$s.release"
  rm -rf "$tmp"
  log "$s: cached vmlinuz-$rel ($(cat "$CACHE/$s.version"))"
done
# The package lists were only needed to find the kernels.
rm -rf "$APTDIR"
echo "$CACHE"
