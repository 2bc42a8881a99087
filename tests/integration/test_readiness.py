"""Readiness checks what each service needs to serve, and says degraded while a relay is stuck."""

import logging
from contextlib import asynccontextmanager

import httpx
import pytest

from shared.http import create_app
from shared.logs import Outage
from shared.outbox import OutboxRelay
from shared.runtime import Runtime

pytestmark = pytest.mark.integration

NO_POSTGRES = "postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:1/none"


@asynccontextmanager
async def no_lifespan(app):
    yield


async def test_a_service_that_serves_without_postgres_stays_ready_when_postgres_is_down(settings):
    down = settings.model_copy(update={"database_url": NO_POSTGRES})
    ingest = Runtime(down, "ingest", uses_database=False)
    scoring = Runtime(down, "scoring")
    try:
        assert await ingest.readiness_problem() is None
        assert (await scoring.readiness_problem() or "").startswith("postgres unreachable")
    finally:
        await ingest.engine.dispose()
        await scoring.engine.dispose()


async def test_readyz_says_degraded_with_the_reason_while_a_relay_is_stuck(settings):
    runtime = Runtime(settings.model_copy(update={"outbox_stuck_after_s": 60}), "scoring")
    clock = [0.0]
    relay = OutboxRelay("scoring", runtime.sessions, producer=None)  # type: ignore[arg-type]
    relay.outage = Outage(logging.getLogger("test"), "outbox relay scoring", clock=lambda: clock[0])
    runtime.relay = relay
    app = create_app("leadrouter scoring", runtime, no_lifespan)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            relay.outage.failed(ConnectionError("broker unreachable"))
            clock[0] = 61.0
            answer = await client.get("/readyz")
    finally:
        await runtime.engine.dispose()
    assert answer.status_code == 200  # out of service would not unstick it; the alert pages
    assert answer.json() == {
        "status": "degraded",
        "reason": "outbox relay scoring has not published for 61s: "
        "ConnectionError: broker unreachable",
    }
