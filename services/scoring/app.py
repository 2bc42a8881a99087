"""Scoring: consumes lead events, keeps the leads projection, emits lifecycle transitions."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query

from services.scoring import repository
from services.scoring.scoring import LeadState
from services.scoring.service import ScoringHandler
from shared.http import Problem, create_app
from shared.kafka import LEAD_EVENTS, LEAD_LIFECYCLE
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import Settings, get_settings


def build_app(settings: Settings | None = None, playbook: Playbook | None = None) -> FastAPI:
    """The scoring application."""
    settings = settings or get_settings()
    playbook = playbook or load_playbook(settings.playbook)
    runtime = Runtime(settings, "scoring")
    runtime.consume(
        [settings.topic(LEAD_EVENTS)],
        settings.consumer_group("scoring"),
        ScoringHandler(playbook, settings.topic(LEAD_LIFECYCLE)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        runtime.start_consuming()
        yield
        await runtime.stop()

    async def readiness(app: FastAPI) -> str | None:
        return await runtime.readiness_problem()

    app = create_app(
        "leadrouter scoring",
        lifespan,
        readiness,
        description="Explainable lead scores and lifecycle stages, from the shared playbook.",
    )

    @app.get("/v1/leads", tags=["leads"], summary="Find a lead by email")
    async def find_lead(email: str = Query(..., min_length=3)) -> dict[str, Any]:
        async with runtime.sessions() as session:
            state = await repository.find_by_email(session, email)
        if state is None:
            raise Problem(404, f"no lead with email {email!r}")
        return _view(state, playbook)

    @app.get(
        "/v1/leads/{lead_key}", tags=["leads"], summary="A lead's score, explanation and stage"
    )
    async def get_lead(lead_key: str) -> dict[str, Any]:
        async with runtime.sessions() as session:
            state = await repository.get_lead(session, lead_key)
        if state is None:
            raise Problem(404, f"no lead {lead_key!r}")
        return _view(state, playbook)

    return app


def _view(state: LeadState, playbook: Playbook) -> dict[str, Any]:
    return {
        "lead_key": state.lead_key,
        "email": state.email,
        "attributes": state.attributes,
        "score": state.score,
        "tier": playbook.taxonomy.tier_for(state.score),
        "stage": state.stage,
        "events_count": state.events_count,
        "explanation": state.explanation(),
        "last_activity_at": state.last_activity_at,
    }
