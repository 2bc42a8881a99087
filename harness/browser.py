"""Debian's Chromium as the browser tests and the board benchmark launch it (no downloads)."""

CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet on a closed network: no background connections, updates or sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
