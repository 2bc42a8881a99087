"""The SLA clocks' timers: the early warning, the accept breach (reassign or escalate) and the
contact breach; the queue check lives with routing.

Lock order: the timer runner locks through `lock_for_timers` before it claims (the reps if a
handler may route, then the handoffs), so a handler never waits for the reps after a handoff.
"""

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.flows.base import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    HANDOFF_TIMERS,
    MANAGER_BREACH,
    MANAGER_WARNING,
    QUEUE_CHECK,
    REVISIT,
    STALE_RECYCLE,
    STALE_REMINDER,
    WARNING,
    episode,
)
from services.handoff.flows.manager_queue import ManagerQueueFlow
from services.handoff.flows.revisit import RevisitFlow
from services.handoff.flows.stale import StaleFlow
from services.handoff.metrics import SLA_BREACHES, SLA_OUTCOMES, SLA_WARNINGS
from services.handoff.status import Escalate, Handoff, HandoffStatus, after_accept_breach
from shared import timers
from shared.timers import Timer

log = logging.getLogger(__name__)

# Timers whose handlers route (a breach reassigns, a queue check drains): they need the reps.
ROUTING_TIMERS = frozenset({ACCEPT_BREACH, QUEUE_CHECK, REVISIT, STALE_RECYCLE})


class TimerFlow(ManagerQueueFlow, RevisitFlow, StaleFlow):
    """What the handoff service's durable timers do when they fire."""

    def timer_handlers(self) -> dict[str, timers.TimerHandler]:
        """The durable timers this service fires, by kind."""
        return {
            WARNING: self.on_warning,
            ACCEPT_BREACH: self.on_accept_breach,
            CONTACT_BREACH: self.on_contact_breach,
            QUEUE_CHECK: self.on_queue_check,
            MANAGER_WARNING: self.on_manager_warning,
            MANAGER_BREACH: self.on_manager_breach,
            REVISIT: self.on_revisit,
            STALE_REMINDER: self.on_stale_reminder,
            STALE_RECYCLE: self.on_stale_recycle,
        }

    async def lock_for_timers(
        self, session: AsyncSession, due: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """The timer runner's `lock_first`: the reps if a handler may route, then the SLA
        timers' handoffs that no other transaction holds; returns the timers free to fire."""
        if any(kind in ROUTING_TIMERS for kind, _ in due):
            await repository.lock_reps(session)
        handoff_ids = [key for kind, key in due if kind in HANDOFF_TIMERS]
        free = await repository.lock_free_handoffs(session, handoff_ids) if handoff_ids else set()
        return {(kind, key) for kind, key in due if kind not in HANDOFF_TIMERS or key in free}

    async def on_warning(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Before the accept deadline: tell the rep and the manager while there is time."""
        handoff = await repository.lock_handoff(session, timer.key)
        if for_this_assignment(handoff, timer, {HandoffStatus.ASSIGNED}):
            assert handoff is not None
            await self._warn(session, handoff)

    async def _warn(self, session: AsyncSession, handoff: Handoff) -> None:
        # The id derives from the assignment (its accept_by), not from the timer's due time,
        # which a failed attempt moves: the warning timer and an overdue breach both send it,
        # and a retry of either, are one event.
        SLA_WARNINGS.labels(handoff.team, handoff.tier).inc()
        await self._publish(session, handoff, "sla_warning", cause=f"warn:{episode(handoff)}")

    async def on_accept_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Not accepted in time: publish the breach, reassign or escalate, drain the queue."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not for_this_assignment(handoff, timer, {HandoffStatus.ASSIGNED}):
            return
        assert handoff is not None
        # The warning comes before the breach: if this assignment's warning has not fired yet
        # (another instance may hold it this moment, or a failed attempt moved it past the
        # breach), it goes out now; the warning timer then sends the same event or finds the
        # lead reassigned.
        warning = await timers.find(session, WARNING, timer.key)
        if warning is not None and for_this_assignment(handoff, warning, {HandoffStatus.ASSIGNED}):
            await self._warn(session, handoff)
        cause = f"breach:{episode(handoff)}"
        SLA_BREACHES.labels(handoff.team, handoff.tier, "accept").inc()
        SLA_OUTCOMES.labels(handoff.team, handoff.tier, "breached").inc()
        log.info("accept SLA breached", extra={"handoff_id": timer.key})
        handoff = await self._save(session, handoff, accept_breaches=handoff.accept_breaches + 1)
        await self._publish(session, handoff, "sla_breached", cause=cause, clock="accept")
        await timers.cancel(session, CONTACT_BREACH, timer.key)
        reps = await repository.lock_reps(session)
        action = after_accept_breach(handoff, reps, self.playbook, now)
        if isinstance(action, Escalate):
            await self._escalate(session, handoff, action, cause, now)
        else:
            await self._assign(
                session,
                handoff,
                action.decision,
                reps,
                now,
                cause=cause,
                kind="reassigned",
                routing_reason=f"reassigned after an SLA breach: {action.decision.reason}",
                reassignments=handoff.reassignments + 1,
                previous_reps=action.previous_reps,
                previous_rep_id=handoff.rep_id,
            )
        # The rep who lost the lead has a free slot now.
        await self.drain_queue(session, handoff.team, now)
        self._gauges_stale = True

    async def _escalate(
        self,
        session: AsyncSession,
        handoff: Handoff,
        action: Escalate,
        cause: str,
        now: datetime,
    ) -> Handoff:
        """Move a breached handoff to its team's manager queue."""
        team = self.teams[handoff.team]
        updated = await self._save(
            session,
            handoff,
            rep_id=None,
            status=HandoffStatus.ESCALATED,
            queue=team.manager_queue or f"{team.name}-manager",
            reassignments=handoff.reassignments + 1,
            previous_reps=action.previous_reps,
            routing_reason=f"escalated to the manager's queue after an SLA breach: {action.why}",
        )
        await timers.cancel(session, WARNING, handoff.handoff_id)
        updated = await self._start_manager_clock(session, updated, now)
        await self._publish(
            session, updated, "reassigned", cause=cause, previous_rep_id=handoff.rep_id
        )
        return updated

    async def on_contact_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Accepted (or not) but not contacted in time: publish the breach."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not for_this_assignment(
            handoff, timer, {HandoffStatus.ASSIGNED, HandoffStatus.ACCEPTED}
        ):
            return
        assert handoff is not None
        SLA_BREACHES.labels(handoff.team, handoff.tier, "contact").inc()
        handoff = await self._save(session, handoff, contact_breached=True)
        await self._publish(
            session,
            handoff,
            "sla_breached",
            cause=f"contact:{episode(handoff)}",
            clock="contact",
        )


def for_this_assignment(
    handoff: Handoff | None, timer: Timer, statuses: set[HandoffStatus]
) -> bool:
    """Whether an SLA timer belongs to the handoff's current assignment in one of `statuses`.

    A timer claimed before a reassignment (an earlier one in the same batch, or another
    instance, breached and reassigned the lead) belongs to the previous rep's clock: it must
    not warn or breach the next rep's. A timer without the payload was set before timers
    named their assignment and counts as the current one's.
    """
    if handoff is None or handoff.status not in statuses or handoff.accept_by is None:
        return False
    episode_ = timer.payload.get("accept_by")
    return episode_ is None or datetime.fromisoformat(episode_) == handoff.accept_by
