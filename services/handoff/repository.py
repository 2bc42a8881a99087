"""SQL for reps (with their fairness ledger) and handoffs."""

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.routing import RepLoad
from shared.db import metadata
from shared.playbook import Playbook

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
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("handoff_id", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
    Column("rep_id", Text, ForeignKey("reps.rep_id")),
    Column("team", Text),
    Column("status", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("routing_reason", Text, nullable=False),
    Column("lifecycle_event_id", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def sync_roster(session: AsyncSession, playbook: Playbook) -> None:
    """Make the reps table match the playbook's roster; the fairness ledger is kept."""
    values = [
        {
            "rep_id": r.id,
            "name": r.name,
            "email": r.email,
            "team": t.name,
            "weight": r.weight,
            "active": True,
            "assigned_total": 0,
        }
        for t in playbook.routing.teams
        for r in t.reps
    ]
    stmt = pg_insert(reps).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rep_id"],
            set_={c: stmt.excluded[c] for c in ("name", "email", "team", "weight", "active")},
        )
    )
    await session.execute(
        update(reps).where(reps.c.rep_id.not_in([v["rep_id"] for v in values])).values(active=False)
    )


async def lock_team(session: AsyncSession, team: str) -> list[RepLoad]:
    """The team's reps, locked so concurrent routing reads a consistent ledger."""
    rows = await session.execute(
        select(reps).where(reps.c.team == team).order_by(reps.c.rep_id).with_for_update()
    )
    return [RepLoad(r.rep_id, r.name, r.team, r.weight, r.assigned_total, r.active) for r in rows]


async def record_assignment(session: AsyncSession, rep_id: str) -> None:
    """Advance the rep's fairness ledger by one handoff."""
    await session.execute(
        update(reps)
        .where(reps.c.rep_id == rep_id)
        .values(assigned_total=reps.c.assigned_total + 1, updated_at=func.now())
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


async def list_handoffs(
    session: AsyncSession, status: str | None, rep_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest handoffs first, optionally filtered."""
    query = select(handoffs).order_by(handoffs.c.created_at.desc()).limit(limit)
    if status:
        query = query.where(handoffs.c.status == status)
    if rep_id:
        query = query.where(handoffs.c.rep_id == rep_id)
    return [dict(r._mapping) for r in await session.execute(query)]


async def get_handoff(session: AsyncSession, handoff_id: str) -> dict[str, Any] | None:
    """One handoff, or None."""
    row = (
        await session.execute(select(handoffs).where(handoffs.c.handoff_id == handoff_id))
    ).first()
    return dict(row._mapping) if row else None


async def list_reps(session: AsyncSession) -> list[dict[str, Any]]:
    """Every rep with their open handoffs."""
    open_count = (
        select(func.count())
        .where(handoffs.c.rep_id == reps.c.rep_id, handoffs.c.status == "assigned")
        .scalar_subquery()
    )
    rows = await session.execute(
        select(reps, open_count.label("open_handoffs")).order_by(reps.c.rep_id)
    )
    return [dict(r._mapping) for r in rows]
