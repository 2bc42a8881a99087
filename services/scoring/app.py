"""Scoring: consumes lead events and sales outcomes, keeps the leads projection, emits lifecycle."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Query

from services.scoring import repository
from services.scoring.scoring import LeadState, evaluate
from services.scoring.service import RETIER, ScoringHandler
from shared.http import Problem, create_app
from shared.kafka import HANDOFFS, LEAD_EVENTS, LEAD_LIFECYCLE
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import Settings, get_settings


def scoring_handler(settings: Settings, playbook: Playbook) -> ScoringHandler:
    """The handler live processing and `leadrouter scoring replay` share."""
    return ScoringHandler(playbook, settings.topic(LEAD_EVENTS), settings.topic(LEAD_LIFECYCLE))


def build_app(settings: Settings | None = None, playbook: Playbook | None = None) -> FastAPI:
    """The scoring application."""
    settings = settings or get_settings()
    playbook = playbook or load_playbook(settings.playbook)
    runtime = Runtime(settings, "scoring")
    handler = scoring_handler(settings, playbook)
    runtime.consume(
        [settings.topic(LEAD_EVENTS), settings.topic(HANDOFFS)],
        settings.consumer_group("scoring"),
        handler,
    )
    runtime.fire_timers({RETIER: handler.on_retier})

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

    @app.get("/v1/leads", tags=["leads"], summary="Find a lead by email or by any platform id")
    async def find_lead(
        email: str | None = Query(None, min_length=3),
        alias: str | None = Query(None, description="e.g. hubspot:123, segment_anonymous:abc"),
    ) -> dict[str, Any]:
        if not email and not alias:
            raise Problem(
                422,
                "give email or alias",
                errors=[{"pointer": "/email", "detail": "email or alias is required"}],
            )
        async with runtime.sessions() as session:
            if email:
                state = await repository.find_by_email(session, email)
            else:
                state = await repository.get_lead(session, alias or "")
        if state is None:
            raise Problem(404, "no such lead")
        return view(state, playbook, datetime.now(UTC))

    @app.get(
        "/v1/leads/{lead_id}",
        tags=["leads"],
        summary="A lead's score now, its explanation, tier and stage (by key or any alias)",
    )
    async def get_lead(lead_id: str) -> dict[str, Any]:
        async with runtime.sessions() as session:
            state = await repository.get_lead(session, lead_id)
        if state is None:
            raise Problem(404, f"no lead {lead_id!r}")
        return view(state, playbook, datetime.now(UTC))

    return app


def view(state: LeadState, playbook: Playbook, now: datetime) -> dict[str, Any]:
    """A lead as the API shows it: scored now (decay included), and as last stored."""
    at = max(now, state.evaluated_at) if state.evaluated_at else now
    current = evaluate(state, playbook, at)
    return {
        "lead_id": state.lead_key,
        "lead_key": state.lead_key,
        "email": state.email,
        "attributes": state.attributes,
        "score": current.total,
        "fit_score": current.fit,
        "behaviour_score": current.behaviour,
        "tier": playbook.taxonomy.tier_for(current.total),
        "stage": state.stage,
        "stage_definition": playbook.taxonomy.stages.get(state.stage, ""),
        "events_count": state.events_count,
        "explanation": [{"rule": r, "points": p} for r, p in current.contributions],
        "scored_at": at,
        "last_activity_at": state.last_activity_at,
    }
