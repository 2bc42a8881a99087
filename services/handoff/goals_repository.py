"""SQL for goals: what each goal counted in a window, and the last status published per goal.

Counts of MQLs and SQLs for the whole company are the funnel's (people, merged leads once);
for a team or tier, and for every rate, a handoff belongs to the window in which it was
assigned (queued ones: when they qualified), as the funnel's SLA attainment counts it.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.goals import GoalStatus, Period, Tally
from services.handoff.lifecycle import FeedbackAction, HandoffStatus
from services.handoff.repository import funnel_events, handoff_feedback, handoffs, lead_merges
from shared.db import metadata
from shared.playbook.goals import Goal, GoalMetric

TS = DateTime(timezone=True)

# The status last published for each goal's period: a change is published once.
goal_status = Table(
    "goal_status",
    metadata,
    Column("goal_id", Text, primary_key=True),
    Column("period_start", TS, primary_key=True),
    Column("status", Text, nullable=False),
    Column("actual", Float),
    Column("target", Float, nullable=False),
    Column("changed_at", TS, nullable=False),
)

FUNNEL_COUNTS = {GoalMetric.MQLS: "became_mql", GoalMetric.SQLS: "became_sql"}


async def tally(session: AsyncSession, goal: Goal, period: Period, now: datetime) -> Tally:
    """What `goal` counted from the period's start up to `now` (or the period's end)."""
    since, until = period.start, min(now, period.end)
    if goal.metric in FUNNEL_COUNTS and goal.team is None and goal.tier is None:
        return Tally(await _funnel_count(session, FUNNEL_COUNTS[goal.metric], since, until))
    if goal.metric in (GoalMetric.PIPELINE, GoalMetric.REVENUE):
        return Tally(await conversion_amount(session, goal, since, until))
    scope = []
    if goal.team is not None:
        scope.append(handoffs.c.team == goal.team)
    if goal.tier is not None:
        scope.append(handoffs.c.tier == goal.tier)
    if goal.metric == GoalMetric.SQLS:
        converted = and_(
            handoffs.c.converted_to.is_not(None),
            handoffs.c.closed_at >= since,
            handoffs.c.closed_at < until,
        )
        (count,) = (await session.execute(select(func.count()).where(converted, *scope))).one()
        return Tally(count)
    at = func.coalesce(handoffs.c.assigned_at, handoffs.c.qualifying_activity_at)
    window = (at >= since, at < until, *scope)
    figures = (await session.execute(select(*_terms(goal.metric, now)).where(*window))).one()
    value, out_of = figures
    if goal.metric == GoalMetric.MQLS:
        return Tally(value)
    return Tally(value, out_of)


def _terms(metric: GoalMetric, now: datetime) -> tuple[Any, Any]:
    """The (value, out of) aggregates of a metric over handoffs."""
    h = handoffs.c
    accepted = h.accepted_at.is_not(None)
    if metric == GoalMetric.MQLS:
        return func.count(), func.count()
    if metric == GoalMetric.MQL_ACCEPTANCE_RATE:
        decided = or_(accepted, h.status == HandoffStatus.REJECTED)
        return func.count().filter(accepted), func.count().filter(decided)
    if metric == GoalMetric.MQL_TO_SQL:
        return func.count().filter(h.converted_to.is_not(None)), func.count()
    if metric == GoalMetric.ACCEPT_SLA:
        met = func.count().filter(h.accepted_at <= h.accept_by)
        overdue = func.count().filter(h.status == HandoffStatus.ASSIGNED, h.accept_by < now)
        breached = func.coalesce(func.sum(h.accept_breaches), 0) + overdue
        return met, met + breached
    if metric == GoalMetric.CONTACT_SLA:
        met = func.count().filter(h.contacted_at <= h.contact_by)
        late = or_(
            h.contact_breached,
            h.contacted_at > h.contact_by,
            and_(
                h.contacted_at.is_(None),
                h.contact_by < now,
                h.status.in_([HandoffStatus.ASSIGNED, HandoffStatus.ACCEPTED]),
            ),
        )
        return met, met + func.count().filter(late)
    raise ValueError(f"no handoff terms for {metric}")


async def _funnel_count(
    session: AsyncSession, transition: str, since: datetime, until: datetime
) -> int:
    person = func.coalesce(lead_merges.c.lead_key, funnel_events.c.lead_key)
    (count,) = (
        await session.execute(
            select(func.count(func.distinct(person)))
            .select_from(
                funnel_events.outerjoin(
                    lead_merges, lead_merges.c.merged_key == funnel_events.c.lead_key
                )
            )
            .where(
                funnel_events.c.transition == transition,
                funnel_events.c.at >= since,
                funnel_events.c.at < until,
            )
        )
    ).one()
    return int(count)


async def conversion_amount(
    session: AsyncSession, goal: Goal, since: datetime, until: datetime
) -> float:
    """Pipeline (conversions to opportunity) or revenue (to customer) in the goal's currency,
    by when sales gave the conversion, as GET /v1/funnel sums them."""
    f = handoff_feedback.c
    stage = "opportunity" if goal.metric == GoalMetric.PIPELINE else "customer"
    query = select(func.coalesce(func.sum(f.amount), 0)).where(
        f.action == FeedbackAction.CONVERT,
        f.converted_to == stage,
        f.currency == goal.currency,
        f.at >= since,
        f.at < until,
    )
    if goal.team is not None:
        query = query.where(f.team == goal.team)
    if goal.tier is not None:
        query = query.join(handoffs, handoffs.c.handoff_id == f.handoff_id).where(
            handoffs.c.tier == goal.tier
        )
    return float((await session.execute(query)).scalar_one())


async def statuses(session: AsyncSession) -> dict[tuple[str, datetime], str]:
    """The last published status of each (goal, period start)."""
    rows = await session.execute(
        select(goal_status.c.goal_id, goal_status.c.period_start, goal_status.c.status)
    )
    return {(g, start): s for g, start, s in rows}


async def lock_status(session: AsyncSession, goal_id: str, period_start: datetime) -> str | None:
    """The last published status of a goal's period, locked for this transaction."""
    row = (
        await session.execute(
            select(goal_status.c.status)
            .where(goal_status.c.goal_id == goal_id, goal_status.c.period_start == period_start)
            .with_for_update()
        )
    ).scalar_one_or_none()
    return row


async def save_status(
    session: AsyncSession,
    goal_id: str,
    period_start: datetime,
    status: GoalStatus,
    actual: float | None,
    target: float,
    at: datetime,
) -> None:
    """Remember the status published for a goal's period."""
    values = {
        "goal_id": goal_id,
        "period_start": period_start,
        "status": str(status),
        "actual": actual,
        "target": target,
        "changed_at": at,
    }
    stmt = pg_insert(goal_status).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["goal_id", "period_start"],
            set_={k: stmt.excluded[k] for k in ("status", "actual", "target", "changed_at")},
        )
    )
