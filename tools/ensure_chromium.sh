#!/usr/bin/env bash
# make test opens every book page in headless chromium. Before any work: find it, install it where
# we may (root with apt-get, as CI is), or stop with the one-line fix. Never `playwright install`:
# it downloads a browser build of its own and fails offline.
set -euo pipefail
want="${CHROMIUM:-chromium}"
command -v "$want" >/dev/null 2>&1 && exit 0
if [ -n "${CHROMIUM:-}" ]; then
  echo "error: CHROMIUM=$CHROMIUM is not an executable. Fix: point CHROMIUM at a chromium binary, or unset it." >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing; installing Debian's package (apt-get install chromium) ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    && command -v chromium >/dev/null 2>&1 && exit 0
  echo "error: apt-get could not install chromium. Fix: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "error: make test needs chromium for the book's browser check. Fix: sudo apt-get install -y chromium (Debian/Ubuntu), or set CHROMIUM=/path/to/chromium" >&2
exit 1
