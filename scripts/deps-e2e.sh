#!/usr/bin/env bash
# Debian packages for packaging (npm run package), the D-Bus tests and the nspawn end-to-end test.
# Idempotent: installs only what is missing. Run as root.
set -euo pipefail
PKGS=(
  systemd-container # systemd-nspawn: boots the e2e rootfs
  debootstrap       # builds the cached bookworm rootfs
  util-linux        # nsenter, setpriv, mount
  dbus              # dbus-daemon: private buses for the D-Bus unit tests
  systemd           # busctl, systemd-analyze, systemd-notify
  libsystemd0       # sd_notify() through koffi
  rpm               # rpmbuild
  rpmlint
  dpkg-dev          # dpkg-shlibdeps, dpkg-deb
  lintian
  xz-utils          # dpkg-deb -Zxz
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "deps-e2e: all present"
  exit 0
fi
echo "deps-e2e: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
