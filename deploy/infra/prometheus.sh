#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package (for rule tests and a real scrape).
# `up` only makes sure they are installed: tests start their own Prometheus on a free port.
set -euo pipefail
say() { echo "[prometheus] $*"; }
die() { echo "[prometheus] ERROR: $*" >&2; exit 1; }

installed() { command -v promtool >/dev/null && command -v prometheus >/dev/null; }

case "${1:-}" in
  up)
    if installed; then say "$(prometheus --version 2>&1 | head -n 1)"; exit 0; fi
    [[ $(id -u) -eq 0 ]] || die "Prometheus is not installed; run: sudo apt-get install -y prometheus"
    say "installing Debian's prometheus package (brings promtool)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || die "apt-get could not install prometheus"
    # The package may start its own daemon on :9090; tests run their own, so stop it.
    { command -v systemctl >/dev/null && systemctl stop prometheus; } >/dev/null 2>&1 || true
    installed || die "prometheus installed but promtool is missing"
    say "$(prometheus --version 2>&1 | head -n 1)"
    ;;
  down) ;;  # nothing runs
  status) installed && say "installed: $(prometheus --version 2>&1 | head -n 1)" || say "not installed" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
