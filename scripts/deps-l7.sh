#!/usr/bin/env bash
# Debian packages for the L7 tests (test/kernel/l7-routing.test.ts): its clients.
# bench/l7 also wants nginx and haproxy (not installed here: a Debian nginx starts a service on :80).
# Idempotent: installs only what is missing. Run as root.
set -euo pipefail
PKGS=(
  curl # requests one by one
  wrk  # a load client against an L7 route
)
# The shared installer adds whichever of these are missing.
exec bash "$(dirname "$0")/deps.sh" "${PKGS[@]}"
