#!/usr/bin/env bash
# Start ingest, scoring and handoff with the example playbook; Ctrl-C stops them cleanly.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
LOGS="$ROOT/.local/logs"
mkdir -p "$LOGS"
export LEADROUTER_PLAYBOOK="${LEADROUTER_PLAYBOOK:-$ROOT/deploy/playbook.example.yaml}"
# Development credentials (see docs/ingest.md); set your own before pointing real platforms here.
export LEADROUTER_API_KEYS_FILE="${LEADROUTER_API_KEYS_FILE:-$ROOT/deploy/api-keys.example}"
export LEADROUTER_HUBSPOT_CLIENT_SECRET="${LEADROUTER_HUBSPOT_CLIENT_SECRET:-dev-hubspot-secret}"
export LEADROUTER_MAUTIC_WEBHOOK_SECRET="${LEADROUTER_MAUTIC_WEBHOOK_SECRET:-dev-mautic-secret}"
export LEADROUTER_SEGMENT_SHARED_SECRET="${LEADROUTER_SEGMENT_SHARED_SECRET:-dev-segment-secret}"
export LEADROUTER_MARKETO_TOKEN="${LEADROUTER_MARKETO_TOKEN:-dev-marketo-token}"

pids=()
stop() {
  echo
  echo "[run] stopping services"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "[run] stopped (Kafka and PostgreSQL keep running; 'make infra-down' stops them)"
}
trap stop INT TERM

for service in ingest scoring handoff; do
  "$BIN/leadrouter" "$service" >"$LOGS/$service.log" 2>&1 &
  pids+=($!)
  echo "[run] started $service (pid $!, log .local/logs/$service.log)"
done
# Runs the backtests the board queues (POST /v1/playbook/backtests on handoff).
"$BIN/leadrouter" playbook backtest-worker >"$LOGS/backtest-worker.log" 2>&1 &
pids+=($!)
echo "[run] started the backtest worker (pid $!, log .local/logs/backtest-worker.log)"

echo -n "[run] waiting for the services to be ready"
for port in 8000 8001 8002; do
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo; echo "[run] a service exited; see .local/logs/*.log"; tail -n 20 "$LOGS"/*.log; stop; exit 1
      fi
    done
    echo -n "."; sleep 0.5
  done
done
echo " ready"

cat <<TXT

leadrouter is running with the playbook $LEADROUTER_PLAYBOOK

  board        http://127.0.0.1:8002/board  (live SLA board, reps, leads, funnel, playbook)
  API docs     http://127.0.0.1:8000/docs (ingest)  http://127.0.0.1:8001/docs (scoring)  http://127.0.0.1:8002/docs (handoff)
  metrics      http://127.0.0.1:8000/metrics  http://127.0.0.1:8001/metrics  http://127.0.0.1:8002/metrics

Send a lead that asks for a demo:

  curl -sS -X POST http://127.0.0.1:8000/v1/events -H 'content-type: application/json' \\
    -H 'authorization: Bearer dev-key' -d '{
    "id": "demo-1", "identity": {"email": "ana@acme.example"},
    "attributes": {"company": "Acme", "country": "DE"},
    "activity": {"type": "demo_request", "occurred_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"}}'
  curl -sS -X POST http://127.0.0.1:8000/v1/events -H 'content-type: application/json' \\
    -H 'authorization: Bearer dev-key' -d '{
    "id": "demo-2", "identity": {"email": "ana@acme.example"},
    "activity": {"type": "pricing_page_view", "occurred_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"}}'

See the lead's score and the handoff:

  curl -sS -H 'authorization: Bearer dev-admin-key' http://127.0.0.1:8001/v1/leads/email:ana@acme.example
  curl -sS -H 'authorization: Bearer dev-sales-key' http://127.0.0.1:8002/v1/handoffs

Watch the handoff topic as a sales tool would:

  .venv/bin/leadrouter watch leadrouter.handoffs.v1 --from-beginning

Ctrl-C stops the services.
TXT
wait "${pids[@]}"
