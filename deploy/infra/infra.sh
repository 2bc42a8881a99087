#!/usr/bin/env bash
# The local infrastructure for leadrouter: PostgreSQL and Kafka on 127.0.0.1 (see postgres.sh and kafka.sh).
#
#   deploy/infra/infra.sh up       PostgreSQL first, then Kafka, then checks Prometheus's tools (prometheus.sh)
#   deploy/infra/infra.sh down     Kafka, then PostgreSQL
#   deploy/infra/infra.sh status   one line each
#
# Every part runs even if an earlier one failed, so one run shows every problem; exits 1 if any part failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

run_parts() {
  local action=$1 part failed=()
  shift
  for part in "$@"; do
    "$HERE/$part.sh" "$action" || failed+=("$part")
  done
  if ((${#failed[@]})); then
    echo "[infra] ERROR: '$action' failed for: ${failed[*]}; see the [${failed[0]}] messages above, fix that, then run 'deploy/infra/infra.sh $action' again" >&2
    return 1
  fi
}

# prometheus.sh only makes sure promtool/prometheus are installed (the tests start their own Prometheus).
extras=()
[[ -x "$HERE/prometheus.sh" ]] && extras+=(prometheus)

case "${1:-}" in
  up) run_parts up postgres kafka "${extras[@]}" ;;
  down) run_parts down kafka postgres ;;
  status) run_parts status postgres kafka "${extras[@]}" ;;
  *) echo "usage: deploy/infra/infra.sh up|down|status" >&2; exit 2 ;;
esac
