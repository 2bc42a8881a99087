"""What ingest's Kafka transactions cost (group commit: concurrent requests share one): ingest
under wrk with transactions and without (the idempotent producer alone)."""

from bench.env import LOG_DIR, fresh_settings, progress
from bench.result import Figure, Result
from bench.scenarios.ingest import wrk
from harness.processes import Service


async def _events_per_s(transactions: bool, seconds: int, per_request: int) -> float:
    settings = await fresh_settings()
    service = Service("ingest", settings, LOG_DIR)
    service.env.update(
        LEADROUTER_RATE_LIMIT_PER_S="10000000",
        LEADROUTER_RATE_LIMIT_BURST="10000000",
        LEADROUTER_KAFKA_TRANSACTIONS=str(transactions).lower(),
    )
    await service.start()
    try:
        return wrk(service.url, seconds, per_request, connections=8)["rps"] * per_request
    finally:
        service.stop()


async def run(quick: bool) -> Result:
    seconds = 5 if quick else 10
    result = Result("transactions")
    for per_request in (1, 100):
        progress(f"  ingest without transactions, {per_request} per request")
        without = await _events_per_s(False, seconds, per_request)
        progress(f"  ingest with group-commit transactions, {per_request} per request")
        with_tx = await _events_per_s(True, seconds, per_request)
        result.figures.append(
            Figure(
                f"ingest events/s with group-commit transactions, {per_request} per request",
                with_tx,
                "events/s",
                baseline=without,
                baseline_name="the same ingest without transactions",
            )
        )
    return result
