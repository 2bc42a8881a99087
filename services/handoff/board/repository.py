"""Read-only SQL the board needs beyond the handoff API's own queries."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.repository import funnel_events, handoffs, reps
from services.handoff.status import OPEN_STATUSES, WAITING_STATUSES, HandoffStatus

BREACHED = ((handoffs.c.accept_breaches > 0) | handoffs.c.contact_breached).label("breached")
SHOWN = sorted(OPEN_STATUSES | WAITING_STATUSES)


async def board_handoffs(
    session: AsyncSession, team: str | None, tier: str | None, rep_id: str | None
) -> list[dict[str, Any]]:
    """Open and waiting handoffs (oldest first) with the rep's name, optionally filtered."""
    query = (
        select(handoffs, reps.c.name.label("rep_name"), BREACHED)
        .select_from(handoffs.outerjoin(reps, handoffs.c.rep_id == reps.c.rep_id))
        .where(handoffs.c.status.in_(SHOWN))
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
        select(handoffs, reps.c.name.label("rep_name"), BREACHED)
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
    session: AsyncSession, since: datetime, until: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Per tier, for handoffs assigned in the window: the funnel's accept-SLA counts and medians.

    Met and breached are counted as `GET /v1/funnel` counts them overall.
    """
    accept_s = func.extract("epoch", handoffs.c.accepted_at - handoffs.c.assigned_at)
    contact_s = func.extract("epoch", handoffs.c.contacted_at - handoffs.c.assigned_at)
    rows = await session.execute(
        select(
            handoffs.c.tier,
            func.count().filter(handoffs.c.accepted_at <= handoffs.c.accept_by).label("met"),
            (
                func.coalesce(func.sum(handoffs.c.accept_breaches), 0)
                + func.count().filter(
                    handoffs.c.status == HandoffStatus.ASSIGNED, handoffs.c.accept_by < now
                )
            ).label("breached"),
            func.percentile_cont(0.5).within_group(accept_s).label("accept_median_s"),
            func.percentile_cont(0.5).within_group(contact_s).label("contact_median_s"),
        )
        .where(handoffs.c.assigned_at >= since, handoffs.c.assigned_at < until)
        .group_by(handoffs.c.tier)
    )
    return [dict(r._mapping) for r in rows]
