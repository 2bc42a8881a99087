"""A sales signal after the handoff: an mql (or later) lead did an activity the playbook marks
as a signal (`taxonomy.signals`, e.g. a demo request); the rep of its open handoff hears of it
(`signal`). The signal changes no clock: the rep's SLA stays as it was."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import policy_repository
from services.handoff.flows.base import FlowBase
from services.handoff.metrics import SALES_SIGNALS
from shared.events import CloudEvent, LifecycleData
from shared.vocabulary import HandoffKind

log = logging.getLogger(__name__)


class SignalFlow(FlowBase):
    """What a lead's sales signal does to its open handoff."""

    async def pass_signal(
        self, session: AsyncSession, event: CloudEvent, lead: LifecycleData, now: datetime
    ) -> bool:
        """Publish a signal lifecycle event to the rep of the lead's open handoff; True if sent."""
        signal = lead.signal
        if signal is None:
            return False
        handoff = await policy_repository.open_handoff(session, lead.lead_key)
        if handoff is None:
            SALES_SIGNALS.labels(signal.type, "no_open_handoff").inc()
            return False
        log.info(
            "signal %s to the rep",
            signal.type,
            extra={"handoff_id": handoff.handoff_id, "event_id": event.id},
        )
        await self._publish(
            session,
            handoff,
            HandoffKind.SIGNAL.value,
            cause=event.id,
            now=now,
            signal=signal.model_dump(mode="json"),
        )
        SALES_SIGNALS.labels(signal.type, "sent").inc()
        return True
