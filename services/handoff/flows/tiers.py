"""A lead's tier rises after its handoff: the handoff takes the new tier, score and explanation,
its running SLA clock and stale clock tighten (never loosen), and sales tools hear of it
(`tier_raised`)."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import policy_repository, repository
from services.handoff.flows.base import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    STALE_RECYCLE,
    STALE_REMINDER,
    WARNING,
)
from services.handoff.flows.routing import RoutingFlow
from services.handoff.policies import last_feedback_at, raised_stale_deadlines, stale_deadlines
from services.handoff.status import HandoffStatus, raise_tier
from shared import timers
from shared.events import CloudEvent, LifecycleData

log = logging.getLogger(__name__)

TIER_RAISED = "tier_raised"


class TierFlow(RoutingFlow):
    """What a lead's new tier does to its open handoff."""

    async def raise_handoff_tier(
        self, session: AsyncSession, event: CloudEvent, lead: LifecycleData, now: datetime
    ) -> bool:
        """Apply a tier_changed lifecycle event to the lead's open handoff; True if it rose."""
        if lead.tier is None:
            return False
        handoff = await policy_repository.lock_raisable_handoff(session, lead.lead_key)
        if handoff is None:
            return False
        hours = None
        if self.playbook.sla.working_hours_only and handoff.rep_id:
            reps = await repository.list_reps(session)  # read only: no lock, no lock order
            hours = next((r.working_hours for r in reps if r.rep_id == handoff.rep_id), None)
        raised = raise_tier(handoff, lead.tier, lead.score, self.playbook, now, hours)
        if raised is None:
            return False
        warning_pending = await timers.find(session, WARNING, handoff.handoff_id) is not None
        updated = await self._save(
            session,
            handoff,
            tier=raised.tier,
            score=raised.score,
            explanation=[line.model_dump() for line in lead.explanation],
            warn_at=raised.warn_at,
            accept_by=raised.accept_by,
            contact_by=raised.contact_by,
        )
        # The running clock's timers move to the new deadlines and name the new assignment
        # episode (its accept_by), so the old ones can no longer warn or breach.
        payload = {"accept_by": updated.accept_by.isoformat()} if updated.accept_by else None
        due: list[tuple[str, str, datetime, dict[str, str] | None]] = []
        if updated.status == HandoffStatus.ASSIGNED:
            if updated.warn_at and (warning_pending or handoff.warn_at is None):
                due.append((WARNING, updated.handoff_id, updated.warn_at, payload))
            if updated.accept_by:
                due.append((ACCEPT_BREACH, updated.handoff_id, updated.accept_by, payload))
        if updated.status in {HandoffStatus.ASSIGNED, HandoffStatus.ACCEPTED}:
            if updated.contact_by and not updated.contact_breached:
                due.append((CONTACT_BREACH, updated.handoff_id, updated.contact_by, payload))
        # An accepted or contacted handoff's stale clock tightens the same way (or starts, when
        # the old tier had none); a reminder already sent is not sent again.
        stale = raised_stale_deadlines(handoff, updated, self.playbook)
        if stale is not None:
            since = last_feedback_at(updated)
            assert since is not None
            stale_payload = {"since": since.isoformat()}
            if (
                stale_deadlines(handoff, self.playbook) is None
                or await timers.find(session, STALE_REMINDER, handoff.handoff_id) is not None
            ):
                due.append((STALE_REMINDER, updated.handoff_id, stale[0], stale_payload))
            due.append((STALE_RECYCLE, updated.handoff_id, stale[1], stale_payload))
        if due:
            await timers.schedule_each(session, due)
        log.info(
            "tier rose from %s to %s",
            raised.previous_tier,
            raised.tier,
            extra={"handoff_id": handoff.handoff_id, "event_id": event.id},
        )
        await self._publish(
            session,
            updated,
            TIER_RAISED,
            cause=event.id,
            now=now,
            previous_tier=raised.previous_tier,
        )
        self._gauges_stale = True
        return True
