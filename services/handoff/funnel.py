"""The funnel broken down by where leads came from (or by routing rule or tier): rows from
the repository, figures from the pure breakdown."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy, HandoffRow, MoneyRow, StageRow, breakdown
from shared import jsoncodec
from shared.events import CloudEvent


def touches_json(event: CloudEvent) -> str | None:
    """A lifecycle event's touches as the funnel row keeps them (JSON text), or None."""
    touches = event.data.get("touches")
    return jsoncodec.dumps(touches) if touches else None


async def funnel_breakdown(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    group_by: GroupBy,
    model: AttributionModel,
) -> list[dict[str, Any]]:
    """The funnel's groups between two times."""
    stages, routed, money = await repository.breakdown_rows(session, since, until)
    return breakdown(
        group_by,
        model,
        (StageRow(r.transition, r.touches) for r in stages),
        (
            HandoffRow(
                r.touches,
                r.routing_rule,
                r.tier,
                bool(r.accepted),
                r.reason,
                r.converted_to,
                float(r.speed_to_lead_s) if r.speed_to_lead_s is not None else None,
            )
            for r in routed
        ),
        (
            MoneyRow(r.touches, r.routing_rule, r.tier, r.converted_to, r.currency, r.amount)
            for r in money
        ),
    )
