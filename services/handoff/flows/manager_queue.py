"""The manager queue's own clock: an escalated lead may wait there `sla.manager_queue.tiers`
minutes; a warning first, then the breach and the playbook's final policy (recycle the lead to
marketing with reason `unworked`, or keep it waiting)."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.flows.base import MANAGER_BREACH, MANAGER_WARNING
from services.handoff.flows.routing import RoutingFlow
from services.handoff.metrics import MANAGER_QUEUE_SLA
from services.handoff.policies import Recycle, manager_queue_deadlines, manager_queue_outcome
from services.handoff.status import Handoff, HandoffStatus
from shared import timers
from shared.timers import Timer

log = logging.getLogger(__name__)

MANAGER_QUEUE = "manager_queue"


class ManagerQueueFlow(RoutingFlow):
    """Start the manager queue's clock on escalation; warn, breach and apply its policy."""

    async def _start_manager_clock(
        self, session: AsyncSession, handoff: Handoff, now: datetime
    ) -> Handoff:
        """Set the escalated handoff's queue deadline and its two timers (none: no clock)."""
        clock = manager_queue_deadlines(handoff.tier, now, self.playbook)
        if clock is None:
            return handoff
        warn_at, due_at = clock
        updated = await self._save(session, handoff, queue_due_at=due_at)
        payload = {"queue_due_at": due_at.isoformat()}
        await timers.schedule_each(
            session,
            [
                (MANAGER_WARNING, handoff.handoff_id, warn_at, payload),
                (MANAGER_BREACH, handoff.handoff_id, due_at, payload),
            ],
        )
        return updated

    async def on_manager_warning(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Most of the manager queue's time is gone and the lead still waits."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _waiting_on_this_clock(handoff, timer):
            return
        assert handoff is not None and handoff.queue_due_at is not None
        MANAGER_QUEUE_SLA.labels(handoff.team, handoff.tier or "none", "warning").inc()
        await self._publish(
            session,
            handoff,
            "manager_queue_warning",
            cause=f"queue-warn:{handoff.queue_due_at.isoformat()}",
        )

    async def on_manager_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Nobody worked the lead in the manager's queue: the breach, then the final policy."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _waiting_on_this_clock(handoff, timer):
            return
        assert handoff is not None and handoff.queue_due_at is not None
        cause = f"queue-breach:{handoff.queue_due_at.isoformat()}"
        MANAGER_QUEUE_SLA.labels(handoff.team, handoff.tier or "none", "breached").inc()
        log.info("manager queue SLA breached", extra={"handoff_id": handoff.handoff_id})
        await timers.cancel(session, MANAGER_WARNING, handoff.handoff_id)
        await self._publish(session, handoff, "manager_queue_breached", cause=cause)
        outcome = manager_queue_outcome(self.playbook)
        if isinstance(outcome, Recycle):
            await self._recycle(session, handoff, outcome, cause, now)
            self._gauges_stale = True


def _waiting_on_this_clock(handoff: Handoff | None, timer: Timer) -> bool:
    """Whether a manager-queue timer belongs to the handoff's current wait in the queue."""
    if handoff is None or handoff.status != HandoffStatus.ESCALATED:
        return False
    if handoff.queue_due_at is None:
        return False
    due = timer.payload.get("queue_due_at")
    return due is None or datetime.fromisoformat(due) == handoff.queue_due_at
