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
# The shared installer adds whichever of these are missing.
exec bash "$(dirname "$0")/deps.sh" "${PKGS[@]}"
