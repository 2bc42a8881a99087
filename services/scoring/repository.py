"""SQL for the leads projection."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, Integer, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.scoring import LeadState
from shared.db import metadata

leads = Table(
    "leads",
    metadata,
    Column("lead_key", Text, primary_key=True),
    Column("email", Text),
    Column("attributes", JSONB, nullable=False),
    Column("score", Integer, nullable=False),
    Column("stage", Text, nullable=False),
    Column("events_count", Integer, nullable=False),
    Column("explanation", JSONB, nullable=False),
    Column("last_activity_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def _state(row: Any) -> LeadState:
    return LeadState(
        lead_key=row.lead_key,
        email=row.email,
        attributes=row.attributes,
        score=row.score,
        stage=row.stage,
        events_count=row.events_count,
        contributions={c["rule"]: c["points"] for c in row.explanation},
        last_activity_at=row.last_activity_at,
    )


async def lock_leads(session: AsyncSession, keys: Iterable[str]) -> dict[str, LeadState]:
    """The stored state of these leads, locked for update until the transaction ends."""
    rows = await session.execute(
        select(leads).where(leads.c.lead_key.in_(sorted(set(keys)))).with_for_update()
    )
    return {row.lead_key: _state(row) for row in rows}


async def save_leads(session: AsyncSession, states: Iterable[LeadState]) -> None:
    """Insert or update the leads in one statement."""
    values = [
        {
            "lead_key": s.lead_key,
            "email": s.email,
            "attributes": s.attributes,
            "score": s.score,
            "stage": s.stage,
            "events_count": s.events_count,
            "explanation": s.explanation(),
            "last_activity_at": s.last_activity_at,
        }
        for s in states
    ]
    if not values:
        return
    stmt = pg_insert(leads).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["lead_key"],
            set_={
                **{c: stmt.excluded[c] for c in values[0] if c != "lead_key"},
                "updated_at": func.now(),
            },
        )
    )


async def get_lead(session: AsyncSession, lead_key: str) -> LeadState | None:
    """One lead by key, or None."""
    row = (await session.execute(select(leads).where(leads.c.lead_key == lead_key))).first()
    return _state(row) if row else None


async def find_by_email(session: AsyncSession, email: str) -> LeadState | None:
    """One lead by normalised email, or None."""
    row = (
        await session.execute(select(leads).where(leads.c.email == email.strip().lower()).limit(1))
    ).first()
    return _state(row) if row else None
