#!/usr/bin/env bash
# Debian's Chromium for the board's browser tests (driven by Python Playwright): up | down | status.
# `up` only makes sure it is installed: each test launches its own headless browser.
# Never `playwright install`: it downloads a browser build from outside the package registries.
set -euo pipefail
say() { echo "[chromium] $*"; }
die() { echo "[chromium] ERROR: $*" >&2; exit 1; }

BROWSER=${LEADROUTER_CHROMIUM:-/usr/bin/chromium}
installed() { [[ -x "$BROWSER" ]]; }
version() { "$BROWSER" --version 2>/dev/null | head -n 1; }

case "${1:-}" in
  up)
    if installed; then say "$(version)"; exit 0; fi
    [[ $(id -u) -eq 0 ]] || die "Chromium is not installed; run: sudo apt-get install -y chromium"
    say "installing Debian's chromium package (for the board's browser tests)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || die "apt-get could not install chromium"
    installed || die "chromium installed but $BROWSER is missing"
    say "$(version)"
    ;;
  down) ;;  # nothing runs
  status) installed && say "installed: $(version)" || say "not installed" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
