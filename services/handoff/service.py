"""The handoff service: its flows put together, and the consumer's handlers keyed by event type.

Lock order, for every transaction: the reps (in rep_id order, `lock_reps`), then handoff rows,
then timer rows; a team's queued handoffs are taken with SKIP LOCKED, never waited for. A flow
that may need the reps after a handoff (a breach reassigns, a rejection frees a slot and drains
the queue) takes them first; the timer runner locks through `lock_for_timers` before it claims.
Two orders (a warning's timer row then its handoff, a feedback's handoff then that timer; a
breach's reps then the next handoff of its batch, a feedback's handoff then the reps)
deadlocked under load.

Routing locks only the reps its decision can read (`routing.routing_scope`: the lead's team and
its account's owner), so two instances route leads of different teams side by side; the other
flows lock every rep. A transaction takes its reps once, in one rep_id order: a batch locks
the union of what its events need at its first routing (or at its start, when a handoff row
comes first), never a second, smaller set and then a larger one. And it routes as late as it
can (`routing_last`): a lead with nothing else in the batch is routed after the batch's other
events, so the reps are held for the routing and the commit, not for the whole batch.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import erasure, repository
from services.handoff.flows.availability import AvailabilityFlow
from services.handoff.flows.base import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    HANDOFF_TIMERS,
    MANAGER_BREACH,
    MANAGER_WARNING,
    QUEUE_CHECK,
    RELAY,
    SLA_TIMERS,
    WARNING,
)
from services.handoff.flows.feedback import CLOSING_FEEDBACK, FeedbackFlow
from services.handoff.flows.gauges import GaugeFlow
from services.handoff.flows.routing import HeldReps
from services.handoff.flows.signals import SignalFlow
from services.handoff.flows.tiers import TierFlow
from services.handoff.flows.timers import TimerFlow
from services.handoff.funnel import touches_json
from services.handoff.metrics import REJECTIONS, SALES_SIGNALS, SLA_OUTCOMES
from services.handoff.routing import EVERY_REP, RepScope
from shared.consumer import Delivered
from shared.db import db_now
from shared.errors import Invalid
from shared.events import (
    FEEDBACK_ACTIONS,
    FEEDBACK_PREFIX,
    LIFECYCLE_ERASED,
    LIFECYCLE_PREFIX,
    LIFECYCLE_TRANSITIONS,
    CloudEvent,
    LifecycleData,
)
from shared.playbook import Playbook

__all__ = [
    "ACCEPT_BREACH",
    "CONTACT_BREACH",
    "MANAGER_BREACH",
    "MANAGER_WARNING",
    "QUEUE_CHECK",
    "SLA_TIMERS",
    "WARNING",
    "HandoffService",
]

ROUTED_TRANSITIONS = {"became_mql"}
TIER_CHANGED = LIFECYCLE_PREFIX + "tier_changed"
SIGNAL = LIFECYCLE_PREFIX + "signal"


@dataclass
class Batch:
    """What the handlers of one consumer batch share: its clock and its funnel rows."""

    now: datetime | None = None
    # Funnel rows go in one statement per run of lifecycle events; written before anything
    # else that could touch them (an erasure anonymises the lead's rows).
    funnel: list[repository.FunnelRow] = field(default_factory=list)
    # Most lifecycle events only add funnel rows: the handoff gauges are counted again
    # (two queries) only when the batch may have changed a handoff.
    changed_handoffs: bool = False
    # The reps its events may lock (None: none of them locks reps), taken at once.
    reps: RepScope | None = None
    # Those reps as the last routing left them, while routings follow one another.
    held: HeldReps = field(default_factory=HeldReps)

    async def clock(self, session: AsyncSession) -> datetime:
        """The transaction's now(), read once when first needed."""
        self.now = self.now or await db_now(session)
        return self.now

    async def flush_funnel(self, session: AsyncSession) -> None:
        await repository.record_funnel_events(session, self.funnel)
        self.funnel = []


EventHandler = Callable[[AsyncSession, CloudEvent, Batch], Awaitable[None]]


class HandoffService(TimerFlow, FeedbackFlow, AvailabilityFlow, TierFlow, SignalFlow, GaugeFlow):
    """Everything handoff does to its tables, each call inside the caller's transaction."""

    def __init__(
        self,
        playbook: Playbook,
        handoffs_topic: str,
        feedback_topic: str,
        insights_topic: str | None = None,
    ) -> None:
        super().__init__(playbook, handoffs_topic, feedback_topic, insights_topic)
        self._gauges_wake = asyncio.Event()
        for team in self.teams:  # exported at 0 from the start, so ratios and increase() work
            for tier in playbook.sla.tiers:
                for outcome in ("met", "breached"):
                    SLA_OUTCOMES.labels(team, tier, outcome)
            for reason in playbook.sla.reject_reasons:
                REJECTIONS.labels(team, reason)
        for signal in playbook.taxonomy.signals:
            for outcome in ("sent", "no_open_handoff"):
                SALES_SIGNALS.labels(signal, outcome)
        self.handlers: dict[str, EventHandler] = {
            LIFECYCLE_ERASED: self._on_erased,
            TIER_CHANGED: self._on_tier_changed,
            SIGNAL: self._on_signal,
            **{
                LIFECYCLE_PREFIX + t: self._on_transition
                for t in LIFECYCLE_TRANSITIONS
                if LIFECYCLE_PREFIX + t not in {LIFECYCLE_ERASED, TIER_CHANGED, SIGNAL}
            },
            **{FEEDBACK_PREFIX + a: self._on_feedback for a in FEEDBACK_ACTIONS},
        }
        # Types of a known family the contract does not list yet: a newer scoring's
        # transition is counted, an unknown feedback action refused (not dead-lettered).
        self.family_handlers: dict[str, EventHandler] = {
            LIFECYCLE_PREFIX: self._on_transition,
            FEEDBACK_PREFIX: self._on_feedback,
        }

    def handler_for(self, event_type: str) -> EventHandler:
        """The handler of an event type, or Invalid (a permanent failure: dead-lettered)."""
        family = event_type[: event_type.rfind(".") + 1]
        handler = self.handlers.get(event_type) or self.family_handlers.get(family)
        if handler is None:
            raise Invalid(f"handoff does not handle events of type {event_type!r}")
        return handler

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        state = Batch(reps=self._batch_rep_scope(batch))
        if _reps_needed_after_a_handoff(batch):
            # the lock order: reps before handoff rows
            await repository.lock_reps(session, state.reps or EVERY_REP)
        for delivered in routing_last(batch):
            event = delivered.event
            if not _routes(event):  # it may change what the held reps' loads count
                state.held.loads = None
            await self.handler_for(event.type)(session, event, state)
        await state.flush_funnel(session)
        if state.changed_handoffs:
            self._gauges_stale = True

    def _batch_rep_scope(self, batch: Sequence[Delivered]) -> RepScope | None:
        """The reps a batch's events may lock: its routed leads' scopes, or every rep when
        closing feedback (which drains a queue with every rep) is among them."""
        scope: RepScope | None = None
        for delivered in batch:
            event = delivered.event
            if event.type.startswith(FEEDBACK_PREFIX):
                if event.type.removeprefix(FEEDBACK_PREFIX) in CLOSING_FEEDBACK:
                    return EVERY_REP
            elif _routes(event):
                lead = LifecycleData.model_validate(event.data)
                scope = self.routing_scope(lead) | (scope or RepScope())
        return scope

    async def _on_transition(self, session: AsyncSession, event: CloudEvent, batch: Batch) -> None:
        """A lifecycle transition: counted in the funnel; a lead that became an MQL is routed."""
        lead = LifecycleData.model_validate(event.data)
        await repository.record_merges(session, lead.lead_key, lead.merged_keys)
        batch.funnel.append(
            (event.id, lead.lead_key, lead.transition, event.time, touches_json(event))
        )
        if lead.transition in ROUTED_TRANSITIONS:
            # Read when first needed (now() is the transaction's start whenever it is read): a
            # batch of lifecycle events that are only counted needs no clock.
            batch.now = await self.route(
                session, event, lead, batch.now, scope=batch.reps, held=batch.held
            )
            batch.changed_handoffs = True

    async def _on_tier_changed(
        self, session: AsyncSession, event: CloudEvent, batch: Batch
    ) -> None:
        """Counted in the funnel; a rise in tier tightens the lead's open handoff."""
        lead = LifecycleData.model_validate(event.data)
        await repository.record_merges(session, lead.lead_key, lead.merged_keys)
        batch.funnel.append(
            (event.id, lead.lead_key, lead.transition, event.time, touches_json(event))
        )
        if await self.raise_handoff_tier(session, event, lead, await batch.clock(session)):
            batch.changed_handoffs = True

    async def _on_signal(self, session: AsyncSession, event: CloudEvent, batch: Batch) -> None:
        """Counted in the funnel; the rep of the lead's open handoff hears of the signal."""
        lead = LifecycleData.model_validate(event.data)
        await repository.record_merges(session, lead.lead_key, lead.merged_keys)
        batch.funnel.append(
            (event.id, lead.lead_key, lead.transition, event.time, touches_json(event))
        )
        await self.pass_signal(session, event, lead, await batch.clock(session))

    async def _on_erased(self, session: AsyncSession, event: CloudEvent, batch: Batch) -> None:
        """A lead was erased: its handoffs closed and anonymised."""
        await batch.flush_funnel(session)
        erased = LifecycleData.model_validate(event.data)
        batch.changed_handoffs = True
        now = await batch.clock(session)
        await erasure.erase_lead(session, erased.lead_key, now, RELAY, list(HANDOFF_TIMERS))

    async def _on_feedback(self, session: AsyncSession, event: CloudEvent, batch: Batch) -> None:
        """Sales feedback from Kafka."""
        await batch.flush_funnel(session)
        batch.changed_handoffs = True
        await self.take_feedback_event(session, event, await batch.clock(session))


def _reps_needed_after_a_handoff(batch: Sequence[Delivered]) -> bool:
    """Whether an event of the batch needs the reps after an earlier one locked a handoff
    (feedback or an erasure): then the batch locks the reps first. A batch of lifecycle events
    routes with the reps taken first anyway, so the speed-to-lead path pays nothing."""
    handoff_locked = False
    for delivered in batch:
        event = delivered.event
        if event.type.startswith(FEEDBACK_PREFIX):
            closing = event.type.removeprefix(FEEDBACK_PREFIX) in CLOSING_FEEDBACK
            if closing and handoff_locked:
                return True
            handoff_locked = True
        elif event.type in {LIFECYCLE_ERASED, TIER_CHANGED}:
            handoff_locked = True
        elif handoff_locked and _routes(event):
            return True
    return False


def routing_last(batch: Sequence[Delivered]) -> list[Delivered]:
    """The batch in the order its handlers run: routed leads that no later event of the batch
    concerns (same lead key, subject or merged key) move to its end, in their order.

    Routed leads keep their order among themselves (the ledger decides by it, and the backtest
    replays it), so one that must stay where it came keeps the earlier ones there too. Only in
    a batch that locks no handoff row (no feedback, erasure or tier change): there, reps are
    locked before handoff rows, so routing stays where it came.
    """
    if any(_locks_a_handoff(d.event) for d in batch):
        return list(batch)
    later: set[str] = set()
    last: list[Delivered] = []
    kept: list[Delivered] = []
    stays = False  # a later routed lead stays where it came: so do the earlier ones
    for delivered in reversed(batch):
        keys = _lead_keys(delivered.event)
        routes = _routes(delivered.event)
        if routes and not stays and not keys & later:
            last.append(delivered)
        else:
            kept.append(delivered)
            stays = stays or routes
        later |= keys
    return kept[::-1] + last[::-1]


def _locks_a_handoff(event: CloudEvent) -> bool:
    return event.type.startswith(FEEDBACK_PREFIX) or event.type in {LIFECYCLE_ERASED, TIER_CHANGED}


def _lead_keys(event: CloudEvent) -> set[str]:
    """Every lead key an event names: its subject, its lead and the leads merged into it."""
    keys = {event.subject} if event.subject else set()
    if isinstance(lead_key := event.data.get("lead_key"), str):
        keys.add(lead_key)
    merged = event.data.get("merged_keys")
    if isinstance(merged, list):
        keys.update(k for k in merged if isinstance(k, str))
    return keys


def _routes(event: CloudEvent) -> bool:
    """Whether the handler of a consumed event routes a lead."""
    return event.type.startswith(LIFECYCLE_PREFIX) and (
        event.type not in {LIFECYCLE_ERASED, TIER_CHANGED, SIGNAL}
        and event.data.get("transition") in ROUTED_TRANSITIONS
    )
