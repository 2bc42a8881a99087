"""Sales feedback: accept, contact, reject or convert a handoff, from HTTP or Kafka."""

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.flows.base import ACCEPT_BREACH, REVISIT, SLA_TIMERS, STALE_TIMERS, WARNING
from services.handoff.flows.stale import StaleFlow
from services.handoff.insights import check_insight
from services.handoff.metrics import (
    FEEDBACK_REFUSED,
    RECYCLED,
    REJECTIONS,
    SLA_OUTCOMES,
    TIME_TO_ACCEPT,
    TIME_TO_CONTACT,
)
from services.handoff.money import conversion_money, money_columns
from services.handoff.policies import RejectOutcome, reject_outcome
from services.handoff.sales_insights import record_insight
from services.handoff.status import (
    OPEN_STATUSES,
    FeedbackAction,
    FeedbackConflict,
    FeedbackNotAllowed,
    Handoff,
    HandoffNotFound,
    HandoffStatus,
    InvalidFeedback,
    accept_sla_outcome,
    check_feedback_author,
    next_status,
)
from shared import audit, timers
from shared.events import FEEDBACK_PREFIX, CloudEvent, FeedbackData

log = logging.getLogger(__name__)

# Feedback that may close an open handoff, freeing a slot (the queue is drained: reps needed).
CLOSING_FEEDBACK = frozenset({FeedbackAction.REJECT, FeedbackAction.CONVERT})


class FeedbackFlow(StaleFlow):
    """What sales says about a handoff."""

    async def take_feedback_event(
        self, session: AsyncSession, event: CloudEvent, now: datetime
    ) -> None:
        """A feedback event from Kafka: applied and audited, or refused and counted."""
        feedback = FeedbackData.model_validate(event.data)
        action = event.type.removeprefix(FEEDBACK_PREFIX)
        try:
            await self.apply_feedback(session, action, feedback, now, cause=event.id)
            # Kafka ACLs decide who may write feedback; the trail records who said so.
            await audit.record(
                session,
                f"kafka:{event.source}",
                f"feedback.{action}",
                feedback.handoff_id,
                {"event_id": event.id, "rep_id": feedback.rep_id},
            )
        except (FeedbackConflict, InvalidFeedback, FeedbackNotAllowed, HandoffNotFound) as exc:
            FEEDBACK_REFUSED.labels(action if action in set(FeedbackAction) else "other").inc()
            log.warning("sales feedback refused: %s", exc, extra={"event_id": event.id})

    async def apply_feedback(
        self,
        session: AsyncSession,
        action: str,
        feedback: FeedbackData,
        now: datetime,
        cause: str,
        api_key_name: str | None = None,
    ) -> Handoff:
        """Accept, contact, reject or convert a handoff (HTTP and Kafka both come here).

        Checked in this order: the handoff exists (404), the move is possible (409), the
        reason or stage is known (422), the author is its rep or a manager of its team (403).
        """
        if action in CLOSING_FEEDBACK:
            # Draining the queue after it needs the reps, and they come before the handoff.
            await repository.lock_reps(session)
        handoff = await repository.lock_handoff(session, feedback.handoff_id)
        if handoff is None:
            raise HandoffNotFound(f"no handoff {feedback.handoff_id!r}")
        status = next_status(handoff, action, self.playbook, feedback.reason, feedback.converted_to)
        money = conversion_money(
            action, feedback.converted_to, feedback.amount, feedback.currency, self.playbook
        )
        insight = check_insight(feedback.tags, feedback.note, self.playbook)
        check_feedback_author(handoff, feedback.rep_id, self.playbook)
        changes: dict[str, Any] = {"status": status}
        rejected: RejectOutcome | None = None
        if action in {FeedbackAction.ACCEPT, FeedbackAction.CONTACT}:
            outcome = accept_sla_outcome(handoff, now)
            if outcome:
                SLA_OUTCOMES.labels(handoff.team, handoff.tier, outcome).inc()
            if outcome == "breached":  # accepted late, before the breach timer fired
                changes["accept_breaches"] = handoff.accept_breaches + 1
            if handoff.accepted_at is None:
                changes["accepted_at"] = now  # contacting a lead accepts it
                TIME_TO_ACCEPT.labels(handoff.tier).observe(
                    (now - (handoff.assigned_at or now)).total_seconds()
                )
        if action == FeedbackAction.ACCEPT:
            await timers.cancel(session, WARNING, handoff.handoff_id)
            await timers.cancel(session, ACCEPT_BREACH, handoff.handoff_id)
        elif action == FeedbackAction.CONTACT:
            changes["contacted_at"] = now
            TIME_TO_CONTACT.labels(handoff.tier).observe(
                (now - (handoff.assigned_at or now)).total_seconds()
            )
            for kind in SLA_TIMERS:
                await timers.cancel(session, kind, handoff.handoff_id)
        elif action == FeedbackAction.REJECT:
            assert feedback.reason is not None  # next_status checked it
            rejected = reject_outcome(feedback.reason, self.playbook, now)
            changes.update(
                closed_at=now,
                reason=feedback.reason,
                recycle_policy=rejected.policy,
                revisit_at=rejected.revisit_at,
                suppressed_until=rejected.suppressed_until,
            )
            REJECTIONS.labels(handoff.team, feedback.reason).inc()
            RECYCLED.labels(handoff.team, feedback.reason, rejected.policy).inc()
        else:
            changes.update(closed_at=handoff.closed_at or now, converted_to=feedback.converted_to)
            if money and feedback.converted_to:
                changes.update(money_columns(feedback.converted_to, money))
        if status in {HandoffStatus.REJECTED, HandoffStatus.CONVERTED}:
            for kind in (*SLA_TIMERS, *STALE_TIMERS):
                await timers.cancel(session, kind, handoff.handoff_id)
        updated = await self._save(session, handoff, **changes)
        await self._start_stale_clock(session, updated)  # feedback restarts it
        await repository.record_feedback(
            session,
            handoff_id=handoff.handoff_id,
            action=action,
            rep_id=feedback.rep_id,
            api_key_name=api_key_name,
            reason=feedback.reason,
            converted_to=feedback.converted_to,
            amount=money.amount if money else None,
            currency=money.currency if money else None,
            team=handoff.team,
            cause=cause,
            at=now,
        )
        if not insight.empty:
            await record_insight(
                session, self.insights_topic, updated, action, feedback, insight, now, cause
            )
        log.info("feedback %s: now %s", action, status, extra={"handoff_id": handoff.handoff_id})
        await self._publish(session, updated, status, cause=cause)
        if rejected is not None and rejected.recycle:
            await self._publish(session, updated, "recycled", cause=cause)
        if rejected is not None and rejected.revisit_at is not None:
            await timers.schedule(
                session,
                REVISIT,
                handoff.handoff_id,
                rejected.revisit_at,
                {"reason": rejected.reason},
            )
        if handoff.status in OPEN_STATUSES and status not in OPEN_STATUSES:
            await self.drain_queue(session, handoff.team, now)  # the rep has a free slot now
        self._gauges_stale = True
        return updated
