"""Erasure on the handoff side, when scoring publishes `leadrouter.lifecycle.erased`.

The lead's handoffs and funnel rows keep their counts, times and outcomes under a random
anonymous key (so the funnel and SLA figures stay right) and lose the email, attributes and
explanation; open handoffs close as `erased` with their SLA timers cancelled; handoff events
not yet relayed to sales tools are dropped.
"""

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.repository import funnel_events, handoffs
from shared import timers
from shared.db import outbox

ERASED = "erased"
OPEN_OR_QUEUED = ("assigned", "accepted", "contacted", "queued")


async def erase_lead(
    session: AsyncSession, lead_key: str, now: datetime, relay: str, timer_kinds: list[str]
) -> int:
    """Anonymise one lead's handoffs and funnel rows; how many handoffs it had."""
    anonymous = f"erased:{uuid.uuid4().hex}"
    open_ids = list(
        await session.scalars(
            select(handoffs.c.handoff_id).where(
                handoffs.c.lead_key == lead_key, handoffs.c.status.in_(OPEN_OR_QUEUED)
            )
        )
    )
    for kind in timer_kinds:
        await timers.cancel(session, kind, *open_ids)
    if open_ids:
        await session.execute(
            update(handoffs)
            .where(handoffs.c.handoff_id.in_(open_ids))
            .values(status=ERASED, closed_at=now, queue=None)
        )
    result = await session.execute(
        update(handoffs)
        .where(handoffs.c.lead_key == lead_key)
        .values(lead_key=anonymous, email=None, attributes={}, explanation=[], updated_at=now)
    )
    await session.execute(
        update(funnel_events).where(funnel_events.c.lead_key == lead_key).values(lead_key=anonymous)
    )
    await session.execute(delete(outbox).where(outbox.c.relay == relay, outbox.c.key == lead_key))
    return int(getattr(result, "rowcount", 0) or 0)
