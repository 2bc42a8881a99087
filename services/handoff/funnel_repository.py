"""SQL for the funnel: stage counts, SLA outcomes, timings, rejections, recycled leads, money,
and the rows its breakdown by source, campaign, rule and tier is counted from."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.repository import funnel_events, handoff_feedback, handoffs, lead_merges
from services.handoff.status import FeedbackAction, HandoffStatus


async def funnel(
    session: AsyncSession, since: datetime, until: datetime, now: datetime
) -> dict[str, Any]:
    """The shared numbers between two times: stage counts, SLA outcomes, timings, rejections."""
    person = func.coalesce(lead_merges.c.lead_key, funnel_events.c.lead_key)
    stage_rows = await session.execute(
        select(funnel_events.c.transition, func.count(func.distinct(person)))
        .select_from(
            funnel_events.outerjoin(
                lead_merges, lead_merges.c.merged_key == funnel_events.c.lead_key
            )
        )
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
                func.count().filter(handoffs.c.accepted_at <= handoffs.c.accept_by).label("met"),
                func.coalesce(func.sum(handoffs.c.accept_breaches), 0).label("breached"),
                # past the deadline, its breach timer not fired yet: decided all the same
                func.count()
                .filter(handoffs.c.status == HandoffStatus.ASSIGNED, handoffs.c.accept_by < now)
                .label("overdue"),
                func.count()
                .filter(
                    handoffs.c.status == HandoffStatus.ASSIGNED,
                    handoffs.c.accept_by >= now,
                )
                .label("undecided"),
                func.percentile_cont(0.5).within_group(accept_s).label("accept_p50"),
                func.percentile_cont(0.9).within_group(accept_s).label("accept_p90"),
                func.percentile_cont(0.5).within_group(contact_s).label("contact_p50"),
                func.percentile_cont(0.9).within_group(contact_s).label("contact_p90"),
            ).where(*window)
        )
    ).one()
    breaches = await session.execute(
        select(handoffs.c.team, func.count())
        .where(*window, (handoffs.c.accept_breaches > 0) | handoffs.c.contact_breached)
        .group_by(handoffs.c.team)
    )
    rejections = await session.execute(
        select(handoff_feedback.c.reason, func.count())
        .where(
            handoff_feedback.c.action == FeedbackAction.REJECT,
            handoff_feedback.c.at >= since,
            handoff_feedback.c.at < until,
        )
        .group_by(handoff_feedback.c.reason)
    )
    money = await session.execute(
        select(
            handoff_feedback.c.converted_to,
            handoff_feedback.c.currency,
            func.sum(handoff_feedback.c.amount),
        )
        .where(
            handoff_feedback.c.action == FeedbackAction.CONVERT,
            handoff_feedback.c.amount.is_not(None),
            handoff_feedback.c.at >= since,
            handoff_feedback.c.at < until,
        )
        .group_by(handoff_feedback.c.converted_to, handoff_feedback.c.currency)
    )
    recycled: dict[str, dict[str, int]] = {"reason": {}, "policy": {}}
    for reason, policy, count in await session.execute(
        select(handoffs.c.reason, handoffs.c.recycle_policy, func.count())
        .where(
            handoffs.c.recycle_policy.is_not(None),
            handoffs.c.closed_at >= since,
            handoffs.c.closed_at < until,
        )
        .group_by(handoffs.c.reason, handoffs.c.recycle_policy)
    ):
        by_reason, by_policy = recycled["reason"], recycled["policy"]
        by_reason[reason or "none"] = by_reason.get(reason or "none", 0) + count
        by_policy[policy] = by_policy.get(policy, 0) + count
    return {
        "stages": stages,
        "money": [tuple(row) for row in money.all()],
        "handoffs": figures._asdict(),
        "breaches_by_team": dict(breaches.all()),
        "rejected_by_reason": dict(rejections.all()),
        "recycled_by_reason": recycled["reason"],
        "recycled_by_policy": recycled["policy"],
    }


# -- the funnel broken down (services/handoff/breakdown.py) ----------------------------------


async def breakdown_rows(
    session: AsyncSession, since: datetime, until: datetime
) -> tuple[list[Any], list[Any], list[Any]]:
    """The rows the breakdown is counted from: each person's first reaching of a stage in the
    window (with the touches then), the handoffs routed in the window, and the amounts given
    with conversions in the window (with their handoff's touches, rule and tier)."""
    person = func.coalesce(lead_merges.c.lead_key, funnel_events.c.lead_key)
    stages = (
        await session.execute(
            select(funnel_events.c.transition, funnel_events.c.touches)
            .select_from(
                funnel_events.outerjoin(
                    lead_merges, lead_merges.c.merged_key == funnel_events.c.lead_key
                )
            )
            .where(funnel_events.c.at >= since, funnel_events.c.at < until)
            .distinct(person, funnel_events.c.transition)
            .order_by(person, funnel_events.c.transition, funnel_events.c.at)
        )
    ).all()
    speed_s = func.extract("epoch", handoffs.c.assigned_at - handoffs.c.qualifying_activity_at)
    routed = (
        await session.execute(
            select(
                handoffs.c.touches,
                handoffs.c.routing_rule,
                handoffs.c.tier,
                handoffs.c.accepted_at.is_not(None).label("accepted"),
                handoffs.c.reason,
                handoffs.c.converted_to,
                speed_s.label("speed_to_lead_s"),
            ).where(handoffs.c.created_at >= since, handoffs.c.created_at < until)
        )
    ).all()
    money = (
        await session.execute(
            select(
                handoffs.c.touches,
                handoffs.c.routing_rule,
                handoffs.c.tier,
                handoff_feedback.c.converted_to,
                handoff_feedback.c.currency,
                handoff_feedback.c.amount,
            )
            .select_from(
                handoff_feedback.join(
                    handoffs, handoffs.c.handoff_id == handoff_feedback.c.handoff_id
                )
            )
            .where(
                handoff_feedback.c.action == FeedbackAction.CONVERT,
                handoff_feedback.c.amount.is_not(None),
                handoff_feedback.c.at >= since,
                handoff_feedback.c.at < until,
            )
        )
    ).all()
    return list(stages), list(routed), list(money)
