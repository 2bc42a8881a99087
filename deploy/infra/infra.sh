#!/usr/bin/env bash
# Kafka and PostgreSQL for leadrouter on 127.0.0.1, Prometheus's tools and Chromium (board tests): up | down | status.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  up) "$HERE/postgres.sh" up && "$HERE/kafka.sh" up && "$HERE/prometheus.sh" up && "$HERE/chromium.sh" up ;;
  down) rc=0; "$HERE/kafka.sh" down || rc=1; "$HERE/postgres.sh" down || rc=1; exit $rc ;;
  status)
    rc=0
    for part in postgres kafka prometheus chromium; do "$HERE/$part.sh" status || rc=1; done
    exit $rc ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
