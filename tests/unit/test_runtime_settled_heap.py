"""Every service serves with the start-up heap frozen (shared/runtime.py::settled_heap)."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.http import create_app
from shared.runtime import Runtime
from shared.settings import Settings


def test_an_app_serves_with_the_start_up_heap_frozen_and_restores_it_at_shutdown():
    seen: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen["during start-up"] = gc.get_freeze_count()
        yield
        seen["during shutdown"] = gc.get_freeze_count()

    app = create_app("leadrouter test", Runtime(Settings(), "test", uses_database=False), lifespan)

    @app.get("/heap")
    async def heap() -> dict[str, int]:
        return {"frozen": gc.get_freeze_count(), "young_threshold": gc.get_threshold()[0]}

    threshold = gc.get_threshold()
    with TestClient(app) as client:
        serving = client.get("/heap").json()
    assert seen == {"during start-up": 0, "during shutdown": 0}
    assert serving["frozen"] > 0 and serving["young_threshold"] == 10_000
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
