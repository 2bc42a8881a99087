"""Handoff: routes qualified leads to reps, runs SLA clocks, takes feedback, serves the funnel."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.handoff import backtest_jobs, endpoints, goals_endpoints, repository
from services.handoff.board import BoardState
from services.handoff.board import router as board_router
from services.handoff.goals_service import GoalsJob
from services.handoff.service import HandoffService
from services.handoff.webhooks import Webhooks
from shared import audit
from shared.db import db_now
from shared.http import create_app
from shared.kafka import GOALS, HANDOFFS, LEAD_LIFECYCLE, SALES_FEEDBACK, SALES_INSIGHTS
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import HandoffSettings, get_settings


def build_app(settings: HandoffSettings | None = None, playbook: Playbook | None = None) -> FastAPI:
    """The handoff application."""
    settings = settings or get_settings()
    playbook = playbook or load_playbook(settings.playbook)
    runtime = Runtime(settings, "handoff")
    service = HandoffService(
        playbook,
        settings.topic(HANDOFFS),
        settings.topic(SALES_FEEDBACK),
        settings.topic(SALES_INSIGHTS),
    )
    runtime.consume(
        [settings.topic(LEAD_LIFECYCLE), settings.topic(SALES_FEEDBACK)],
        settings.consumer_group("handoff"),
        service,
    )
    goals = GoalsJob(playbook, settings.topic(GOALS), settings.goals_check_interval_s)
    runtime.fire_timers(
        {**service.timer_handlers(), **goals.timer_handlers()},
        lock_first=service.lock_for_timers,
    )
    runtime.after_commit(service.committed)
    Webhooks(runtime, playbook)  # its consumer and workers run on the runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        async with runtime.sessions() as session, session.begin():
            await repository.sync_roster(session, playbook)
            await service.drain_queues(session, await db_now(session))
            await service.observe(session)
            await goals.start(session, await db_now(session))
        runtime.start_consuming()
        runtime.spawn("handoff-gauges", service.keep_gauges(runtime.sessions))
        yield
        await runtime.stop()

    app = create_app(
        "leadrouter handoff",
        runtime,
        lifespan,
        description="Routes qualified leads to sales reps, runs the SLA clocks, takes sales "
        "feedback and serves the funnel both teams share.",
        routers=[
            endpoints.router,
            goals_endpoints.router,
            backtest_jobs.router,
            board_router,
            audit.router,
        ],
    )
    app.state.playbook = playbook
    app.state.handoff_service = service
    app.state.board = BoardState.for_service(settings, playbook)
    endpoints.document_playbook_values(app, playbook)
    return app
