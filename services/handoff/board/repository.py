"""Read-only SQL the board needs beyond the handoff API's own queries."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.flows.base import REVISIT
from services.handoff.repository import funnel_events, handoffs, reps
from services.handoff.status import OPEN_STATUSES, WAITING_STATUSES, HandoffStatus
from shared.db import timers

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
    return [dict(r._mapping) for r in await session.execute(_filtered(query, team, tier, rep_id))]


# A revisit or suppression lasts months: the board lists the soonest ones.
POLICY_WAITS_SHOWN = 200


async def waiting_on_reject_policy(
    session: AsyncSession, now: datetime, team: str | None, tier: str | None, rep_id: str | None
) -> list[dict[str, Any]]:
    """Rejected leads a reject policy holds, soonest first: a revisit not yet routed (its
    timer pending) or a suppression not yet over; none that qualified and was routed since."""
    later = handoffs.alias("later")
    revisit_pending = exists().where(
        timers.c.kind == REVISIT, timers.c.key == handoffs.c.handoff_id
    )
    routed_since = exists().where(
        later.c.lead_key == handoffs.c.lead_key, later.c.created_at > handoffs.c.created_at
    )
    query = (
        select(handoffs, reps.c.name.label("rep_name"))
        .select_from(handoffs.outerjoin(reps, handoffs.c.rep_id == reps.c.rep_id))
        .where(
            handoffs.c.status == HandoffStatus.REJECTED,
            ((handoffs.c.recycle_policy == "revisit") & revisit_pending)
            | ((handoffs.c.recycle_policy == "suppress") & (handoffs.c.suppressed_until > now)),
            ~routed_since,
        )
        .order_by(
            func.coalesce(handoffs.c.revisit_at, handoffs.c.suppressed_until),
            handoffs.c.handoff_id,
        )
        .limit(POLICY_WAITS_SHOWN)
    )
    return [dict(r._mapping) for r in await session.execute(_filtered(query, team, tier, rep_id))]


async def pending_timers(
    session: AsyncSession, kinds: Collection[str], keys: Collection[str]
) -> dict[tuple[str, str], datetime]:
    """When the pending timers of these kinds and keys fire, by (kind, key)."""
    if not keys:
        return {}
    rows = await session.execute(
        select(timers.c.kind, timers.c.key, timers.c.due_at).where(
            timers.c.kind.in_(sorted(kinds)), timers.c.key.in_(sorted(keys))
        )
    )
    return {(r.kind, r.key): r.due_at for r in rows}


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


def _filtered(
    query: Select[Any], team: str | None, tier: str | None, rep_id: str | None
) -> Select[Any]:
    """The board's filters on handoff rows: a team, a tier, a rep (each when given)."""
    for column, value in (
        (handoffs.c.team, team),
        (handoffs.c.tier, tier),
        (handoffs.c.rep_id, rep_id),
    ):
        if value:
            query = query.where(column == value)
    return query
