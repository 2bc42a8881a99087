"""Scoring: consumes lead events and sales outcomes, keeps the leads projection, emits lifecycle."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.scoring import endpoints
from services.scoring.service import RELAY, RETIER, ScoringHandler
from shared import audit
from shared.http import create_app
from shared.kafka import HANDOFFS, LEAD_EVENTS, LEAD_LIFECYCLE
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import ScoringSettings, get_settings


def scoring_handler(
    settings: ScoringSettings, playbook: Playbook, relay: str = RELAY
) -> ScoringHandler:
    """The handler live processing and `leadrouter scoring replay` (own relay) share."""
    return ScoringHandler(
        playbook, settings.topic(LEAD_EVENTS), settings.topic(LEAD_LIFECYCLE), relay
    )


def build_app(settings: ScoringSettings | None = None, playbook: Playbook | None = None) -> FastAPI:
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

    app = create_app(
        "leadrouter scoring",
        runtime,
        lifespan,
        description="Explainable lead scores and lifecycle stages, from the shared playbook.",
        routers=[endpoints.router, audit.router],
    )

    app.state.playbook = playbook
    app.state.scoring = handler  # erasure runs the consumer's own handler
    return app
