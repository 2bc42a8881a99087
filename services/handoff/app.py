"""Handoff: routes qualified leads to sales reps and publishes handoff events for sales tools."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query

from services.handoff import repository
from services.handoff.service import HandoffHandler
from shared.http import Problem, create_app
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import Settings, get_settings


def build_app(settings: Settings | None = None, playbook: Playbook | None = None) -> FastAPI:
    """The handoff application."""
    settings = settings or get_settings()
    playbook = playbook or load_playbook(settings.playbook)
    runtime = Runtime(settings, "handoff")
    runtime.consume(
        [settings.topic(LEAD_LIFECYCLE)],
        settings.consumer_group("handoff"),
        HandoffHandler(playbook, settings.topic(HANDOFFS)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        async with runtime.sessions() as session, session.begin():
            await repository.sync_roster(session, playbook)
        runtime.start_consuming()
        yield
        await runtime.stop()

    async def readiness(app: FastAPI) -> str | None:
        return await runtime.readiness_problem()

    app = create_app(
        "leadrouter handoff",
        lifespan,
        readiness,
        description="Routes qualified leads to sales reps and tells sales tools about it.",
    )

    @app.get("/v1/handoffs", tags=["handoffs"], summary="Handoffs, newest first")
    async def list_handoffs(
        status: str | None = None,
        rep_id: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            return await repository.list_handoffs(session, status, rep_id, limit)

    @app.get("/v1/handoffs/{handoff_id}", tags=["handoffs"], summary="One handoff")
    async def get_handoff(handoff_id: str) -> dict[str, Any]:
        async with runtime.sessions() as session:
            handoff = await repository.get_handoff(session, handoff_id)
        if handoff is None:
            raise Problem(404, f"no handoff {handoff_id!r}")
        return handoff

    @app.get("/v1/reps", tags=["reps"], summary="Reps with their current load")
    async def list_reps() -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            return await repository.list_reps(session)

    return app
