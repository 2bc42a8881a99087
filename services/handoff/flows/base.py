"""What every handoff flow shares: the playbook, storing a handoff and publishing its event.

Every method runs inside the caller's transaction (the consumer's batch, a timer's firing
or an HTTP request's unit of work); decisions come from the pure core (`status.py`,
`routing.py`), SQL from the repository.
"""

import logging
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.metrics import HANDOFF_EVENTS, RECYCLED
from services.handoff.policies import Recycle
from services.handoff.status import Handoff, HandoffStatus, SlaClock
from shared import outbox, timers
from shared.db import db_now
from shared.events import HANDOFF_PREFIX, CloudEvent, HandoffData, derived_event_id
from shared.kafka import HANDOFFS, SALES_INSIGHTS
from shared.playbook import Playbook

log = logging.getLogger(__name__)

RELAY = "handoff"
WARNING, ACCEPT_BREACH, CONTACT_BREACH, QUEUE_CHECK = (
    "handoff.sla_warning",
    "handoff.accept_breach",
    "handoff.contact_breach",
    "handoff.queue_check",  # keyed by team: a rep's working hours begin
)
SLA_TIMERS = (WARNING, ACCEPT_BREACH, CONTACT_BREACH)
MANAGER_WARNING, MANAGER_BREACH = "handoff.manager_queue_warning", "handoff.manager_queue_breach"
REVISIT = "handoff.revisit"  # a rejected lead's revisit date: route it again
STALE_REMINDER, STALE_RECYCLE = "handoff.stale_reminder", "handoff.stale_recycle"
STALE_TIMERS = (STALE_REMINDER, STALE_RECYCLE)
# Every timer keyed by a handoff id: locked with its handoff, cancelled when its lead is erased.
HANDOFF_TIMERS = (*SLA_TIMERS, MANAGER_WARNING, MANAGER_BREACH, REVISIT, *STALE_TIMERS)


class FlowBase:
    """The state the flows share, and storing and publishing a handoff."""

    def __init__(
        self,
        playbook: Playbook,
        handoffs_topic: str,
        feedback_topic: str,
        insights_topic: str | None = None,
    ) -> None:
        self.playbook = playbook
        self.handoffs_topic = handoffs_topic
        self.feedback_topic = feedback_topic
        # Beside the handoffs topic when not named (tests name only the two they read).
        self.insights_topic = insights_topic or (
            handoffs_topic.replace(HANDOFFS, SALES_INSIGHTS)
            if HANDOFFS in handoffs_topic
            else f"{handoffs_topic}.{SALES_INSIGHTS}"
        )
        self.teams = {t.name: t for t in playbook.routing.teams}
        self.rep_names = {r.id: r.name for t in playbook.routing.teams for r in t.reps}
        # Set by a transaction that may have changed handoffs; the gauges follow its commit.
        self._gauges_stale = False

    async def _save(self, session: AsyncSession, handoff: Handoff, **changes: Any) -> Handoff:
        """Write changes to a handoff and return it as it now stands."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}
        await repository.update_handoff(session, handoff.handoff_id, **values)
        current = {f.name: getattr(handoff, f.name) for f in fields(Handoff)}
        return Handoff.from_row({**current, **changes})

    async def _recycle(
        self, session: AsyncSession, handoff: Handoff, outcome: Recycle, cause: str, now: datetime
    ) -> Handoff:
        """Close a handoff by a policy and send its lead back to marketing (`recycled`)."""
        for kind in HANDOFF_TIMERS:
            await timers.cancel(session, kind, handoff.handoff_id)
        updated = await self._save(
            session,
            handoff,
            status=HandoffStatus.RECYCLED,
            closed_at=now,
            reason=outcome.reason,
            recycle_policy=outcome.policy,
        )
        RECYCLED.labels(handoff.team, outcome.reason, outcome.policy).inc()
        log.info(
            "recycled: %s by policy %s",
            outcome.reason,
            outcome.policy,
            extra={"handoff_id": handoff.handoff_id},
        )
        await self._publish(session, updated, "recycled", cause=cause, now=now)
        return updated

    async def _publish(
        self,
        session: AsyncSession,
        handoff: Handoff,
        kind: str,
        cause: str,
        previous_rep_id: str | None = None,
        clock: SlaClock | None = None,
        now: datetime | None = None,
        **extra: Any,
    ) -> None:
        """Queue a handoff event; `now`, when the caller has it, is the transaction's db_now()
        (Postgres' now() is fixed for a transaction), which saves a round trip."""
        await outbox.add_event(
            session,
            RELAY,
            self.handoffs_topic,
            CloudEvent(
                id=derived_event_id("handoff", kind, handoff.handoff_id, cause),
                source="leadrouter/handoff",
                type=HANDOFF_PREFIX + kind,
                time=now or await db_now(session),
                subject=handoff.lead_key,
                data=HandoffData.model_validate(
                    {
                        **handoff.as_dict(),
                        "rep_name": self.rep_names.get(handoff.rep_id or ""),
                        "stage": "mql",
                        "previous_rep_id": previous_rep_id,
                        "clock": clock,
                        **extra,
                    }
                ).model_dump(mode="json"),
            ),
        )
        HANDOFF_EVENTS.labels(handoff.team, handoff.tier or "none", kind).inc()


def episode(handoff: Handoff) -> str:
    """The assignment an SLA clock runs for, named by its accept deadline (a reassignment
    starts a new clock, so a new deadline)."""
    assert handoff.accept_by is not None
    return handoff.accept_by.isoformat()


def episode_payload(handoff: Handoff) -> dict[str, Any] | None:
    return {"accept_by": episode(handoff)} if handoff.accept_by else None
