"""Sales insights: kept with their handoff's source, rule and tier, and published on the
sales-insights topic for marketing; read back per campaign or routing rule."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy
from services.handoff.insights import Insight, InsightRow, summarise
from services.handoff.lifecycle import Handoff
from shared import outbox
from shared.events import (
    SALES_INSIGHT,
    CloudEvent,
    FeedbackData,
    SalesInsightData,
    derived_event_id,
)

RELAY = "handoff"


async def record_insight(
    session: AsyncSession,
    topic: str,
    handoff: Handoff,
    action: str,
    feedback: FeedbackData,
    insight: Insight,
    now: datetime,
    cause: str,
) -> None:
    """Store an insight and queue its event (in the feedback's transaction)."""
    touches = dict(handoff.touches) if handoff.touches else None
    await repository.record_insight(
        session,
        handoff_id=handoff.handoff_id,
        action=action,
        rep_id=feedback.rep_id,
        team=handoff.team,
        routing_rule=handoff.routing_rule,
        tier=handoff.tier,
        touches=touches,
        tags=insight.tags,
        note=insight.note,
        at=now,
    )
    data = SalesInsightData(
        handoff_id=handoff.handoff_id,
        lead_key=handoff.lead_key,
        action=action,
        rep_id=feedback.rep_id,
        team=handoff.team,
        routing_rule=handoff.routing_rule,
        tier=handoff.tier,
        reason=feedback.reason,
        converted_to=feedback.converted_to,
        tags=insight.tags,
        note=insight.note,
        touches=touches,  # type: ignore[arg-type]
    )
    await outbox.add_event(
        session,
        RELAY,
        topic,
        CloudEvent(
            id=derived_event_id("insight", handoff.handoff_id, action, cause),
            source="leadrouter/handoff",
            type=SALES_INSIGHT,
            time=now,
            subject=handoff.lead_key,
            data=data.model_dump(mode="json"),
        ),
    )


async def insights_summary(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    group_by: GroupBy,
    model: AttributionModel,
) -> list[dict[str, Any]]:
    """The insights between two times, per campaign, source, medium, routing rule or tier."""
    rows = await repository.insight_rows(session, since, until)
    return summarise(
        (InsightRow(r.touches, r.routing_rule, r.tier, r.tags, r.note, r.at) for r in rows),
        group_by,
        model,
    )
