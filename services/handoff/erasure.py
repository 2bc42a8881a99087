"""Erasure on the handoff side, when scoring publishes `leadrouter.lifecycle.erased`.

The lead's handoffs and funnel rows keep their counts, times and outcomes under a random
anonymous key (so the funnel and SLA figures stay right) and lose the email, attributes and
explanation; its sales insights lose their notes (their tags stay counted); open handoffs
close as `erased` with their SLA timers cancelled; handoff and insight events not yet relayed
are dropped.
"""

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.lifecycle import OPEN_STATUSES, WAITING_STATUSES, HandoffStatus
from services.handoff.repository import funnel_events, handoffs, lead_merges, sales_insights
from shared import timers
from shared.db import outbox

NOT_CLOSED = sorted(OPEN_STATUSES | WAITING_STATUSES)


async def erase_lead(
    session: AsyncSession, lead_key: str, now: datetime, relay: str, timer_kinds: list[str]
) -> int:
    """Anonymise one lead's handoffs and funnel rows; how many handoffs it had."""
    anonymous = f"erased:{uuid.uuid4().hex}"
    # Keys merged into this lead name the same person (and count it once in the funnel).
    merged = list(
        await session.scalars(
            select(lead_merges.c.merged_key).where(lead_merges.c.lead_key == lead_key)
        )
    )
    keys = [lead_key, *merged]
    await session.execute(
        delete(lead_merges).where(
            (lead_merges.c.lead_key == lead_key) | lead_merges.c.merged_key.in_(keys)
        )
    )
    open_ids = list(
        await session.scalars(
            select(handoffs.c.handoff_id)
            .where(handoffs.c.lead_key.in_(keys), handoffs.c.status.in_(NOT_CLOSED))
            .order_by(handoffs.c.handoff_id)
            .with_for_update()  # the lock order: handoff rows before their timers
        )
    )
    for kind in timer_kinds:
        await timers.cancel(session, kind, *open_ids)
    if open_ids:
        await session.execute(
            update(handoffs)
            .where(handoffs.c.handoff_id.in_(open_ids))
            .values(status=HandoffStatus.ERASED, closed_at=now, queue=None)
        )
    # What sales wrote about the person goes; the tags (no personal data) stay counted.
    await session.execute(
        update(sales_insights)
        .where(
            sales_insights.c.handoff_id.in_(
                select(handoffs.c.handoff_id).where(handoffs.c.lead_key.in_(keys))
            ),
            sales_insights.c.note.is_not(None),
        )
        .values(note=None)
    )
    result = await session.execute(
        update(handoffs)
        .where(handoffs.c.lead_key.in_(keys))
        .values(lead_key=anonymous, email=None, attributes={}, explanation=[], updated_at=now)
    )
    await session.execute(
        update(funnel_events).where(funnel_events.c.lead_key.in_(keys)).values(lead_key=anonymous)
    )
    await session.execute(delete(outbox).where(outbox.c.relay == relay, outbox.c.key.in_(keys)))
    return int(getattr(result, "rowcount", 0) or 0)
