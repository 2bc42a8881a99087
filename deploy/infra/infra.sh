#!/usr/bin/env bash
# Kafka and PostgreSQL for leadrouter, on 127.0.0.1: up | down | status.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  up) "$HERE/postgres.sh" up && "$HERE/kafka.sh" up ;;
  down) rc=0; "$HERE/kafka.sh" down || rc=1; "$HERE/postgres.sh" down || rc=1; exit $rc ;;
  status) rc=0; "$HERE/postgres.sh" status || rc=1; "$HERE/kafka.sh" status || rc=1; exit $rc ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
