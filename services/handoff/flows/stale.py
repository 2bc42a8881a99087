"""Handoffs that never progress: an accepted or contacted lead without feedback for
`sla.stale.tiers.<tier>.remind_days` gets a reminder (`stale_reminder`); after `recycle_days`
it goes back to marketing with reason `stale`. Each feedback starts the clock again."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.flows.base import STALE_RECYCLE, STALE_REMINDER
from services.handoff.flows.routing import RoutingFlow
from services.handoff.metrics import STALE_HANDOFFS
from services.handoff.policies import Recycle, last_feedback_at, stale_deadlines
from services.handoff.status import Handoff
from shared import timers
from shared.timers import Timer

log = logging.getLogger(__name__)


class StaleFlow(RoutingFlow):
    """Start the stale clock on feedback; remind, then recycle."""

    async def _start_stale_clock(self, session: AsyncSession, handoff: Handoff) -> None:
        """Set (or move) the handoff's stale timers from its last feedback (none: no policy)."""
        clock = stale_deadlines(handoff, self.playbook)
        if clock is None:
            return
        remind_at, recycle_at = clock
        since = last_feedback_at(handoff)
        assert since is not None
        payload = {"since": since.isoformat()}
        await timers.schedule_each(
            session,
            [
                (STALE_REMINDER, handoff.handoff_id, remind_at, payload),
                (STALE_RECYCLE, handoff.handoff_id, recycle_at, payload),
            ],
        )

    async def on_stale_reminder(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """No feedback for a while: remind the rep (and whoever reads the topic)."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _stale_since_this_feedback(handoff, timer, self):
            return
        assert handoff is not None
        STALE_HANDOFFS.labels(handoff.team, handoff.tier or "none", "reminder").inc()
        await self._publish(
            session, handoff, "stale_reminder", cause=f"stale:{timer.payload.get('since')}"
        )

    async def on_stale_recycle(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Still no feedback: the lead goes back to marketing (reason `stale`), a slot frees."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _stale_since_this_feedback(handoff, timer, self):
            return
        assert handoff is not None
        STALE_HANDOFFS.labels(handoff.team, handoff.tier or "none", "recycled").inc()
        reason = self.playbook.sla.stale.reason
        cause = f"stale-recycle:{timer.payload.get('since')}"
        await self._recycle(session, handoff, Recycle(reason), cause, now)
        await self.drain_queue(session, handoff.team, now)  # the rep has a free slot now
        self._gauges_stale = True


def _stale_since_this_feedback(handoff: Handoff | None, timer: Timer, flow: StaleFlow) -> bool:
    """Whether a stale timer belongs to the handoff's last feedback (a later one moved it)."""
    if handoff is None or stale_deadlines(handoff, flow.playbook) is None:
        return False
    since = timer.payload.get("since")
    last = last_feedback_at(handoff)
    return since is None or (last is not None and datetime.fromisoformat(since) == last)
