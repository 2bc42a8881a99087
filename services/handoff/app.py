"""Handoff: routes qualified leads to reps, runs SLA clocks, takes feedback, serves the funnel."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from services.handoff import repository
from services.handoff.lifecycle import OPEN
from services.handoff.routing import ledger_on_return
from services.handoff.service import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    WARNING,
    HandoffNotFound,
    HandoffService,
)
from shared import audit
from shared.auth import FeedbackWriter, HandoffsReader, RepsWriter
from shared.db import db_now
from shared.errors import NotFound
from shared.events import FeedbackData
from shared.http import create_app
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE, SALES_FEEDBACK
from shared.playbook import Playbook, load_playbook
from shared.runtime import Runtime
from shared.settings import Settings, get_settings


class FeedbackBody(BaseModel):
    """What a sales tool sends with accept, contact, reject or convert."""

    rep_id: str | None = Field(None, description="Who gives the feedback (for the record)")
    reason: str | None = Field(None, description="reject: a reason code from the playbook")
    converted_to: Literal["sql", "opportunity", "customer"] | None = Field(
        None, description="convert: the stage the lead reached"
    )


class Availability(BaseModel):
    available: bool = Field(description="false: out of office; no new leads until true again")


def build_app(settings: Settings | None = None, playbook: Playbook | None = None) -> FastAPI:
    """The handoff application."""
    settings = settings or get_settings()
    playbook = playbook or load_playbook(settings.playbook)
    runtime = Runtime(settings, "handoff")
    service = HandoffService(playbook, settings.topic(HANDOFFS), settings.topic(SALES_FEEDBACK))
    runtime.consume(
        [settings.topic(LEAD_LIFECYCLE), settings.topic(SALES_FEEDBACK)],
        settings.consumer_group("handoff"),
        service,
    )
    runtime.fire_timers(
        {
            WARNING: service.on_warning,
            ACCEPT_BREACH: service.on_accept_breach,
            CONTACT_BREACH: service.on_contact_breach,
        }
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        async with runtime.sessions() as session, session.begin():
            await repository.sync_roster(session, playbook)
            await service.observe(session)
        runtime.start_consuming()
        yield
        await runtime.stop()

    app = create_app(
        "leadrouter handoff",
        runtime,
        lifespan,
        description="Routes qualified leads to sales reps, runs the SLA clocks, takes sales "
        "feedback and serves the funnel both teams share.",
    )

    app.include_router(audit.router)

    @app.get("/v1/handoffs", tags=["handoffs"], summary="Handoffs, newest first, with time left")
    async def list_handoffs(
        principal: HandoffsReader,
        status: str | None = None,
        rep_id: str | None = None,
        team: str | None = None,
        tier: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            rows = await repository.list_handoffs(session, status, rep_id, team, tier, limit)
        now = datetime.now(UTC)
        return [with_time_left(h, now) for h in rows]

    @app.get("/v1/handoffs/{handoff_id}", tags=["handoffs"], summary="One handoff")
    async def get_handoff(principal: HandoffsReader, handoff_id: str) -> dict[str, Any]:
        async with runtime.sessions() as session:
            handoff = await repository.get_handoff(session, handoff_id)
        if handoff is None:
            raise NotFound(f"no handoff {handoff_id!r}")
        return with_time_left(handoff, datetime.now(UTC))

    @app.post(
        "/v1/handoffs/{handoff_id}/{action}",
        tags=["feedback"],
        summary="Sales feedback: accept, contact, reject (with a reason code) or convert",
        responses={
            404: {"description": "Unknown handoff"},
            409: {"description": "Not possible in the handoff's current status"},
            422: {"description": "Unknown reason code or conversion stage"},
        },
    )
    async def feedback(
        principal: FeedbackWriter,
        handoff_id: str,
        action: Literal["accept", "contact", "reject", "convert"],
        body: FeedbackBody | None = None,
    ) -> dict[str, Any]:
        body = body or FeedbackBody()
        data = FeedbackData(handoff_id=handoff_id, **body.model_dump())
        try:
            async with runtime.sessions() as session, session.begin():
                now = await db_now(session)
                updated = await service.apply_feedback(
                    session, action, data, now, cause=f"http:{now.isoformat()}"
                )
                await audit.record(
                    session,
                    principal.name,
                    f"feedback.{action}",
                    handoff_id,
                    {"rep_id": data.rep_id, "reason": data.reason},
                )
                await service.observe(session)
        except HandoffNotFound as exc:
            raise NotFound(str(exc)) from exc
        runtime.committed()
        return with_time_left(updated, datetime.now(UTC))

    @app.get("/v1/reps", tags=["reps"], summary="Reps with their open handoffs and availability")
    async def list_reps(principal: HandoffsReader) -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            return await repository.list_reps(session)

    @app.put(
        "/v1/reps/{rep_id}/availability", tags=["reps"], summary="Mark a rep in or out of office"
    )
    async def set_availability(
        principal: RepsWriter, rep_id: str, body: Availability
    ) -> dict[str, Any]:
        async with runtime.sessions() as session, session.begin():
            reps = {r.rep_id: r for r in await repository.lock_reps(session)}
            rep = reps.get(rep_id)
            if rep is None:
                raise NotFound(f"no rep {rep_id!r}")
            ledger = rep.assigned_total
            if body.available and not rep.available:
                ledger = ledger_on_return(rep, [r for r in reps.values() if r.team == rep.team])
            await repository.set_availability(session, rep_id, body.available, ledger)
            await audit.record(
                session, principal.name, "rep.availability", rep_id, {"available": body.available}
            )
            drained = 0
            if body.available:
                now = await db_now(session)
                drained = await service.drain_queue(session, rep.team, now)
        runtime.committed()
        return {
            "rep_id": rep_id,
            "available": body.available,
            "assigned_total": ledger,
            "assigned_from_queue": drained,
        }

    @app.get("/v1/funnel", tags=["funnel"], summary="The shared numbers between two times")
    async def get_funnel(
        principal: HandoffsReader, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=30)
        async with runtime.sessions() as session:
            raw = await repository.funnel(session, since, until)
        return funnel_view(raw, since, until)

    return app


def with_time_left(handoff: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A handoff with seconds left on its running SLA clock (negative when overdue)."""
    due = {"assigned": handoff.get("accept_by"), "accepted": handoff.get("contact_by")}.get(
        handoff["status"]
    )
    seconds = round((due - now).total_seconds()) if due and handoff["status"] in OPEN else None
    return {**handoff, "sla_seconds_left": seconds}


STAGE_ORDER = [
    ("leads", "became_lead"),
    ("mqls", "became_mql"),
    ("sqls", "became_sql"),
    ("opportunities", "became_opportunity"),
    ("customers", "became_customer"),
]


def funnel_view(raw: dict[str, Any], since: datetime, until: datetime) -> dict[str, Any]:
    """Stage counts, conversion between consecutive stages, SLA attainment and timings."""
    counts = {name: raw["stages"].get(transition, 0) for name, transition in STAGE_ORDER}
    names = [name for name, _ in STAGE_ORDER]
    conversion = {
        f"{a}_to_{b}": round(counts[b] / counts[a], 4) if counts[a] else None
        for a, b in zip(names, names[1:], strict=False)
    }
    h = raw["handoffs"]
    return {
        "since": since,
        "until": until,
        **counts,
        "conversion": conversion,
        "handoffs": h["handoffs"],
        "accepted": h["accepted"],
        "sla_attainment": round(h["in_sla"] / h["with_sla"], 4) if h["with_sla"] else None,
        "time_to_accept_seconds": {"median": h["accept_p50"], "p90": h["accept_p90"]},
        "time_to_first_contact_seconds": {"median": h["contact_p50"], "p90": h["contact_p90"]},
        "breaches_by_team": raw["breaches_by_team"],
        "recycled": raw["stages"].get("recycled", 0),
    }
