"""Read-only SQL the board needs beyond the handoff API's own queries."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.repository import OPEN_STATUSES, funnel_events, handoffs, reps

WAITING_STATUSES = ("queued", "escalated")


async def board_handoffs(
    session: AsyncSession, team: str | None, tier: str | None, rep_id: str | None
) -> list[dict[str, Any]]:
    """Open and waiting handoffs (oldest first) with the rep's name, optionally filtered."""
    query = (
        select(handoffs, reps.c.name.label("rep_name"))
        .select_from(handoffs.outerjoin(reps, handoffs.c.rep_id == reps.c.rep_id))
        .where(handoffs.c.status.in_([*OPEN_STATUSES, *WAITING_STATUSES]))
        .order_by(handoffs.c.created_at, handoffs.c.handoff_id)
    )
    for column, value in (
        (handoffs.c.team, team),
        (handoffs.c.tier, tier),
        (handoffs.c.rep_id, rep_id),
    ):
        if value:
            query = query.where(column == value)
    return [dict(r._mapping) for r in await session.execute(query)]


async def lead_handoffs(session: AsyncSession, lead_key: str) -> list[dict[str, Any]]:
    """Every handoff of one lead, oldest first, with the rep's name."""
    rows = await session.execute(
        select(handoffs, reps.c.name.label("rep_name"))
        .select_from(handoffs.outerjoin(reps, handoffs.c.rep_id == reps.c.rep_id))
        .where(handoffs.c.lead_key == lead_key)
        .order_by(handoffs.c.created_at)
    )
    return [dict(r._mapping) for r in rows]


async def lead_transitions(session: AsyncSession, lead_key: str) -> list[dict[str, Any]]:
    """A lead's lifecycle transitions as handoff received them, oldest first."""
    rows = await session.execute(
        select(funnel_events.c.transition, funnel_events.c.at)
        .where(funnel_events.c.lead_key == lead_key)
        .order_by(funnel_events.c.at)
    )
    return [dict(r._mapping) for r in rows]


async def sla_by_tier(
    session: AsyncSession, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Per tier, for handoffs assigned in the window: accept SLA met/total and median times."""
    accept_s = func.extract("epoch", handoffs.c.accepted_at - handoffs.c.assigned_at)
    contact_s = func.extract("epoch", handoffs.c.contacted_at - handoffs.c.assigned_at)
    rows = await session.execute(
        select(
            handoffs.c.tier,
            func.count().filter(handoffs.c.accept_by.is_not(None)).label("with_sla"),
            # the same test as the funnel's overall attainment
            func.count().filter(handoffs.c.accepted_at <= handoffs.c.accept_by).label("in_sla"),
            func.percentile_cont(0.5).within_group(accept_s).label("accept_median_s"),
            func.percentile_cont(0.5).within_group(contact_s).label("contact_median_s"),
        )
        .where(handoffs.c.assigned_at >= since, handoffs.c.assigned_at < until)
        .group_by(handoffs.c.tier)
    )
    return [dict(r._mapping) for r in rows]


async def reject_reasons(session: AsyncSession, since: datetime, until: datetime) -> dict[str, int]:
    """How often each reject reason was given in the window, most frequent first."""
    count = func.count()
    rows = await session.execute(
        select(handoffs.c.reason, count)
        .where(
            handoffs.c.status == "rejected",
            handoffs.c.closed_at >= since,
            handoffs.c.closed_at < until,
        )
        .group_by(handoffs.c.reason)
        .order_by(count.desc(), handoffs.c.reason)
    )
    return {reason or "none": n for reason, n in rows.all()}
