"""SQL for reps (with their fairness ledger), handoffs and the funnel."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.routing import RepLoad
from shared.db import metadata
from shared.playbook import Playbook
from shared.playbook.routing import WorkingHours

TS = DateTime(timezone=True)

reps = Table(
    "reps",
    metadata,
    Column("rep_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text),
    Column("team", Text, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("assigned_total", BigInteger, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("available", Boolean, nullable=False),
    Column("working_hours", JSONB),
    Column("updated_at", TS, nullable=False, server_default=func.now()),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("handoff_id", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
    Column("rep_id", Text, ForeignKey("reps.rep_id")),
    Column("team", Text),
    Column("queue", Text),
    Column("status", Text, nullable=False),
    Column("tier", Text),
    Column("score", Integer, nullable=False),
    Column("email", Text),
    Column("attributes", JSONB, nullable=False),
    Column("explanation", JSONB, nullable=False),
    Column("routing_rule", Text),
    Column("routing_reason", Text, nullable=False),
    Column("skipped", JSONB, nullable=False),
    Column("lifecycle_event_id", Text, nullable=False, unique=True),
    Column("qualifying_activity_at", TS),
    Column("assigned_at", TS),
    Column("warn_at", TS),
    Column("accept_by", TS),
    Column("contact_by", TS),
    Column("accepted_at", TS),
    Column("contacted_at", TS),
    Column("closed_at", TS),
    Column("breached", Boolean, nullable=False),
    Column("reassignments", Integer, nullable=False),
    Column("previous_reps", JSONB, nullable=False),
    Column("reason", Text),
    Column("converted_to", Text),
    Column("created_at", TS, nullable=False, server_default=func.now()),
    Column("updated_at", TS, nullable=False, server_default=func.now()),
)
Index("handoffs_lead_key", handoffs.c.lead_key)
Index("handoffs_rep_status", handoffs.c.rep_id, handoffs.c.status)
Index("handoffs_status_created", handoffs.c.status, handoffs.c.created_at)

funnel_events = Table(
    "funnel_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
    Column("transition", Text, nullable=False),
    Column("at", TS, nullable=False),
)
Index("funnel_events_transition_at", funnel_events.c.transition, funnel_events.c.at)

OPEN_STATUSES = ("assigned", "accepted", "contacted")


async def sync_roster(session: AsyncSession, playbook: Playbook) -> None:
    """Make the reps table match the playbook; the fairness ledger and availability are kept."""
    values = [
        {
            "rep_id": r.id,
            "name": r.name,
            "email": r.email,
            "team": t.name,
            "weight": r.weight,
            "active": True,
            "assigned_total": 0,
            "capacity": r.capacity,
            "available": True,
            "working_hours": r.working_hours.model_dump(mode="json") if r.working_hours else None,
        }
        for t in playbook.routing.teams
        for r in t.reps
    ]
    stmt = pg_insert(reps).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rep_id"],
            set_={
                c: stmt.excluded[c]
                for c in ("name", "email", "team", "weight", "active", "capacity", "working_hours")
            },
        )
    )
    await session.execute(
        update(reps).where(reps.c.rep_id.not_in([v["rep_id"] for v in values])).values(active=False)
    )


def _open_count():
    return (
        select(func.count())
        .where(handoffs.c.rep_id == reps.c.rep_id, handoffs.c.status.in_(OPEN_STATUSES))
        .scalar_subquery()
    )


async def lock_reps(session: AsyncSession) -> list[RepLoad]:
    """Every rep with their open load, locked so concurrent routing reads one ledger."""
    rows = await session.execute(
        select(reps, _open_count().label("open_handoffs"))
        .order_by(reps.c.rep_id)
        .with_for_update(of=reps)
    )
    return [
        RepLoad(
            r.rep_id,
            r.name,
            r.team,
            r.weight,
            r.assigned_total,
            r.active,
            r.open_handoffs,
            r.capacity,
            r.available,
            WorkingHours.model_validate(r.working_hours) if r.working_hours else None,
        )
        for r in rows
    ]


async def record_assignment(session: AsyncSession, rep_id: str) -> None:
    """Advance the rep's fairness ledger by one handoff."""
    await session.execute(
        update(reps)
        .where(reps.c.rep_id == rep_id)
        .values(assigned_total=reps.c.assigned_total + 1, updated_at=func.now())
    )


async def set_availability(
    session: AsyncSession, rep_id: str, available: bool, ledger: int
) -> None:
    """Mark a rep in or out of office, with the ledger they return on."""
    await session.execute(
        update(reps)
        .where(reps.c.rep_id == rep_id)
        .values(available=available, assigned_total=ledger, updated_at=func.now())
    )


async def insert_handoff(session: AsyncSession, **values: Any) -> bool:
    """Insert a handoff; False when one for the same lifecycle event exists already."""
    inserted = await session.scalar(
        pg_insert(handoffs)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["lifecycle_event_id"])
        .returning(handoffs.c.handoff_id)
    )
    return inserted is not None


async def lock_handoff(session: AsyncSession, handoff_id: str) -> dict[str, Any] | None:
    """One handoff, locked until the transaction ends, or None."""
    row = (
        await session.execute(
            select(handoffs).where(handoffs.c.handoff_id == handoff_id).with_for_update()
        )
    ).first()
    return dict(row._mapping) if row else None


async def lock_queued(session: AsyncSession, team: str) -> list[dict[str, Any]]:
    """A team's leads waiting in its fallback queue, oldest first, locked (others skip them)."""
    rows = await session.execute(
        select(handoffs)
        .where(handoffs.c.team == team, handoffs.c.status == "queued")
        .order_by(handoffs.c.created_at, handoffs.c.handoff_id)
        .with_for_update(skip_locked=True)
    )
    return [dict(r._mapping) for r in rows]


async def update_handoff(session: AsyncSession, handoff_id: str, **values: Any) -> None:
    """Change a handoff."""
    await session.execute(
        update(handoffs)
        .where(handoffs.c.handoff_id == handoff_id)
        .values(**values, updated_at=func.now())
    )


async def list_handoffs(
    session: AsyncSession,
    status: str | None,
    rep_id: str | None,
    team: str | None,
    tier: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest handoffs first, optionally filtered."""
    query = (
        select(handoffs).order_by(handoffs.c.created_at.desc(), handoffs.c.handoff_id).limit(limit)
    )
    for column, value in (
        (handoffs.c.status, status),
        (handoffs.c.rep_id, rep_id),
        (handoffs.c.team, team),
        (handoffs.c.tier, tier),
    ):
        if value:
            query = query.where(column == value)
    return [dict(r._mapping) for r in await session.execute(query)]


async def get_handoff(session: AsyncSession, handoff_id: str) -> dict[str, Any] | None:
    """One handoff, or None."""
    row = (
        await session.execute(select(handoffs).where(handoffs.c.handoff_id == handoff_id))
    ).first()
    return dict(row._mapping) if row else None


async def list_reps(session: AsyncSession) -> list[dict[str, Any]]:
    """Every rep with their open handoffs."""
    rows = await session.execute(
        select(reps, _open_count().label("open_handoffs")).order_by(reps.c.rep_id)
    )
    return [dict(r._mapping) for r in rows]


async def record_funnel_event(
    session: AsyncSession, event_id: str, lead_key: str, transition: str, at: datetime
) -> None:
    """Remember a lifecycle transition for the funnel (once per event id)."""
    await session.execute(
        pg_insert(funnel_events)
        .values(event_id=event_id, lead_key=lead_key, transition=transition, at=at)
        .on_conflict_do_nothing()
    )


async def funnel(session: AsyncSession, since: datetime, until: datetime) -> dict[str, Any]:
    """The shared numbers between two times: stage counts and handoff SLA figures."""
    stage_rows = await session.execute(
        select(funnel_events.c.transition, func.count(func.distinct(funnel_events.c.lead_key)))
        .where(funnel_events.c.at >= since, funnel_events.c.at < until)
        .group_by(funnel_events.c.transition)
    )
    stages = {t: n for t, n in stage_rows}
    window = (handoffs.c.assigned_at >= since, handoffs.c.assigned_at < until)
    accept_s = func.extract("epoch", handoffs.c.accepted_at - handoffs.c.assigned_at)
    contact_s = func.extract("epoch", handoffs.c.contacted_at - handoffs.c.assigned_at)
    figures = (
        await session.execute(
            select(
                func.count().label("handoffs"),
                func.count().filter(handoffs.c.accepted_at.is_not(None)).label("accepted"),
                func.count().filter(handoffs.c.accepted_at <= handoffs.c.accept_by).label("in_sla"),
                func.count().filter(handoffs.c.accept_by.is_not(None)).label("with_sla"),
                func.percentile_cont(0.5).within_group(accept_s).label("accept_p50"),
                func.percentile_cont(0.9).within_group(accept_s).label("accept_p90"),
                func.percentile_cont(0.5).within_group(contact_s).label("contact_p50"),
                func.percentile_cont(0.9).within_group(contact_s).label("contact_p90"),
            ).where(*window)
        )
    ).one()
    breaches = await session.execute(
        select(handoffs.c.team, func.count())
        .where(*window, handoffs.c.breached)
        .group_by(handoffs.c.team)
    )
    return {
        "stages": stages,
        "handoffs": figures._asdict(),
        "breaches_by_team": dict(breaches.all()),
    }
