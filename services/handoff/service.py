"""Handoff flow: route qualified leads, run SLA clocks, drain queues, take sales feedback.

Every method runs inside the caller's transaction (the consumer's batch, a timer's firing
or an HTTP request's unit of work); decisions come from the pure core, SQL from the
repository.

Lock order, for every transaction: the reps (all of them, `lock_reps`), then handoff rows, then
timer rows; a team's queued handoffs are taken with SKIP LOCKED, never waited for. A flow that
may need the reps after a handoff (a breach reassigns, a rejection frees a slot and drains the
queue) takes them first; the timer runner locks through `lock_for_timers` before it claims.
Two orders (a warning's timer row then its handoff, a feedback's handoff then that timer; a
breach's reps then the next handoff of its batch, a feedback's handoff then the reps)
deadlocked under load.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.handoff import erasure, repository
from services.handoff.funnel import touches_json
from services.handoff.insights import check_insight
from services.handoff.lifecycle import (
    OPEN_STATUSES,
    Escalate,
    FeedbackAction,
    FeedbackConflict,
    FeedbackNotAllowed,
    Handoff,
    HandoffNotFound,
    HandoffStatus,
    InvalidFeedback,
    RepNotFound,
    SlaClock,
    accept_sla_outcome,
    after_accept_breach,
    check_feedback_author,
    deadlines,
    next_status,
)
from services.handoff.metrics import (
    FEEDBACK_REFUSED,
    HANDOFF_EVENTS,
    OPEN_HANDOFFS,
    QUEUE_SIZE,
    QUEUED_TIME,
    REJECTIONS,
    ROUTING_DECISIONS,
    SLA_BREACHES,
    SLA_OUTCOMES,
    SLA_WARNINGS,
    SPEED_TO_LEAD,
    TIME_TO_ACCEPT,
    TIME_TO_CONTACT,
)
from services.handoff.money import conversion_money, money_columns
from services.handoff.routing import (
    RepLoad,
    RoutingDecision,
    levelled_ledger,
    next_queue_check,
    route_lead,
)
from services.handoff.sales_insights import record_insight
from shared import audit, outbox, timers
from shared.consumer import Delivered
from shared.db import db_now
from shared.errors import Invalid
from shared.events import (
    FEEDBACK_PREFIX,
    HANDOFF_PREFIX,
    LIFECYCLE_ERASED,
    LIFECYCLE_PREFIX,
    CloudEvent,
    FeedbackData,
    HandoffData,
    LifecycleData,
    derived_event_id,
)
from shared.kafka import HANDOFFS, SALES_INSIGHTS
from shared.playbook import Playbook
from shared.timers import Timer

log = logging.getLogger(__name__)

RELAY = "handoff"
WARNING, ACCEPT_BREACH, CONTACT_BREACH, QUEUE_CHECK = (
    "handoff.sla_warning",
    "handoff.accept_breach",
    "handoff.contact_breach",
    "handoff.queue_check",  # keyed by team: a rep's working hours begin
)
SLA_TIMERS = (WARNING, ACCEPT_BREACH, CONTACT_BREACH)
# Timers whose handlers route (a breach reassigns, a queue check drains): they need the reps.
ROUTING_TIMERS = frozenset({ACCEPT_BREACH, QUEUE_CHECK})
# Feedback that may close an open handoff, freeing a slot (the queue is drained: reps needed).
CLOSING_FEEDBACK = frozenset({FeedbackAction.REJECT, FeedbackAction.CONVERT})
ROUTED_TRANSITIONS = {"became_mql"}


class HandoffService:
    """Everything handoff does to its tables, each call inside the caller's transaction."""

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
        self._gauges_wake = asyncio.Event()
        for team in self.teams:  # exported at 0 from the start, so ratios and increase() work
            for tier in playbook.sla.tiers:
                for outcome in ("met", "breached"):
                    SLA_OUTCOMES.labels(team, tier, outcome)
            for reason in playbook.sla.reject_reasons:
                REJECTIONS.labels(team, reason)

    def timer_handlers(self) -> dict[str, timers.TimerHandler]:
        """The durable timers this service fires, by kind."""
        return {
            WARNING: self.on_warning,
            ACCEPT_BREACH: self.on_accept_breach,
            CONTACT_BREACH: self.on_contact_breach,
            QUEUE_CHECK: self.on_queue_check,
        }

    async def lock_for_timers(
        self, session: AsyncSession, due: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """The timer runner's `lock_first`: the reps if a handler may route, then the SLA
        timers' handoffs that no other transaction holds; returns the timers free to fire."""
        if any(kind in ROUTING_TIMERS for kind, _ in due):
            await repository.lock_reps(session)
        handoff_ids = [key for kind, key in due if kind in SLA_TIMERS]
        free = await repository.lock_free_handoffs(session, handoff_ids) if handoff_ids else set()
        return {(kind, key) for kind, key in due if kind not in SLA_TIMERS or key in free}

    # -- consumer ---------------------------------------------------------------------------

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        # Read when first needed (now() is the transaction's start whenever it is read): a
        # batch of lifecycle events that are only counted needs no clock, so no round trip.
        now: datetime | None = None
        # Funnel rows go in one statement per run of lifecycle events; written before anything
        # else that could touch them (an erasure anonymises the lead's rows).
        funnel: list[repository.FunnelRow] = []
        # Most lifecycle events only add funnel rows: the handoff gauges are counted again
        # (two queries) only when the batch may have changed a handoff.
        changed_handoffs = False
        if _reps_needed_after_a_handoff(batch):
            await repository.lock_reps(session)  # the lock order: reps before handoff rows
        for delivered in batch:
            event = delivered.event
            if not event.type.startswith(LIFECYCLE_PREFIX) or event.type == LIFECYCLE_ERASED:
                await repository.record_funnel_events(session, funnel)
                funnel = []
            if event.type == LIFECYCLE_ERASED:
                erased = LifecycleData.model_validate(event.data)
                changed_handoffs = True
                now = now or await db_now(session)
                await erasure.erase_lead(session, erased.lead_key, now, RELAY, list(SLA_TIMERS))
            elif event.type.startswith(LIFECYCLE_PREFIX):
                lead = LifecycleData.model_validate(event.data)
                await repository.record_merges(session, lead.lead_key, lead.merged_keys)
                funnel.append(
                    (event.id, lead.lead_key, lead.transition, event.time, touches_json(event))
                )
                if lead.transition in ROUTED_TRANSITIONS:
                    now = await self.route(session, event, lead, now)
                    changed_handoffs = True
            elif event.type.startswith(FEEDBACK_PREFIX):
                feedback = FeedbackData.model_validate(event.data)
                action = event.type.removeprefix(FEEDBACK_PREFIX)
                changed_handoffs = True
                now = now or await db_now(session)
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
                except (
                    FeedbackConflict,
                    InvalidFeedback,
                    FeedbackNotAllowed,
                    HandoffNotFound,
                ) as exc:
                    FEEDBACK_REFUSED.labels(
                        action if action in set(FeedbackAction) else "other"
                    ).inc()
                    log.warning("sales feedback refused: %s", exc, extra={"event_id": event.id})
            else:
                raise Invalid(f"handoff does not handle events of type {event.type!r}")
        await repository.record_funnel_events(session, funnel)
        if changed_handoffs:
            self._gauges_stale = True

    # -- routing ----------------------------------------------------------------------------

    async def route(
        self,
        session: AsyncSession,
        event: CloudEvent,
        lead: LifecycleData,
        now: datetime | None = None,
    ) -> datetime:
        """Route a newly qualified lead, once per lifecycle event; returns the `now` it used
        (given, or the database's clock read with the reps: one round trip fewer)."""
        tier = lead.tier or self.playbook.taxonomy.tier_for(lead.score)
        reps, db_time = await repository.lock_reps_and_clock(session)
        now = now or db_time
        decision = route_lead(
            lead.lead_key, lead.email, lead.attributes, tier, reps, self.playbook, now
        )
        handoff_id = derived_event_id("handoff", event.id)
        team = self.teams[decision.team]
        values: dict[str, Any] = {
            "team": decision.team,
            "queue": team.fallback_queue or f"{team.name}-queue",
            "status": HandoffStatus.QUEUED,
            "routing_rule": decision.rule,
            "routing_reason": decision.reason,
            "skipped": decision.skipped,
        }
        if decision.rep_id:
            # Stored assigned at once (one statement, not an insert and an update: the routing
            # transaction is on the speed-to-lead path).
            values.update(self._assignment(tier, decision, reps, now))
        handoff = await repository.insert_handoff(
            session,
            handoff_id=handoff_id,
            lead_key=lead.lead_key,
            tier=tier,
            score=lead.score,
            email=lead.email,
            attributes=lead.attributes,
            explanation=[line.model_dump() for line in lead.explanation],
            lifecycle_event_id=event.id,
            qualifying_activity_at=lead.qualifying_activity_at,
            touches=lead.touches.model_dump(mode="json") if lead.touches else None,
            reassignments=0,
            previous_reps=[],
            **values,
        )
        if handoff is None:
            return now  # this lifecycle event was routed already
        log.info(
            "routed by rule %s to team %s",
            decision.rule,
            decision.team,
            extra={"handoff_id": handoff_id, "event_id": event.id},
        )
        if decision.rep_id:
            await self._assigned(session, None, handoff, decision, now, cause=event.id)
        else:
            ROUTING_DECISIONS.labels(decision.rule).inc()
            await self._publish(session, handoff, "queued", cause=event.id, now=now)
            await self._schedule_queue_check(session, decision.team, reps, now)
        return now

    def _assignment(
        self, tier: str | None, decision: RoutingDecision, reps: list[RepLoad], now: datetime
    ) -> dict[str, Any]:
        """The handoff's columns once the decision's rep has it: rep, status and SLA clock."""
        assert decision.rep_id is not None
        hours = next((r.working_hours for r in reps if r.rep_id == decision.rep_id), None)
        clock = deadlines(tier or "", now, self.playbook, hours)
        return {
            "rep_id": decision.rep_id,
            "team": decision.team,
            "queue": None,
            "status": HandoffStatus.ASSIGNED,
            "assigned_at": now,
            "warn_at": clock.warn_at if clock else None,
            "accept_by": clock.accept_by if clock else None,
            "contact_by": clock.contact_by if clock else None,
            "routing_rule": decision.rule,
            "routing_reason": decision.reason,
            "skipped": decision.skipped,
        }

    async def _assign(
        self,
        session: AsyncSession,
        handoff: Handoff,
        decision: RoutingDecision,
        reps: list[RepLoad],
        now: datetime,
        cause: str,
        kind: str = "assigned",
        routing_reason: str | None = None,
        previous_rep_id: str | None = None,
        from_queue: bool = False,
        **changes: Any,
    ) -> Handoff:
        """Give a handoff to the decision's rep: ledger, rotation level, SLA clock, event."""
        values = self._assignment(handoff.tier, decision, reps, now)
        if routing_reason:
            values["routing_reason"] = routing_reason
        assigned = await self._save(session, handoff, **values, **changes)
        await self._assigned(
            session,
            handoff,
            assigned,
            decision,
            now,
            cause,
            kind=kind,
            previous_rep_id=previous_rep_id,
            from_queue=from_queue,
        )
        return assigned

    async def _assigned(
        self,
        session: AsyncSession,
        before: Handoff | None,
        assigned: Handoff,
        decision: RoutingDecision,
        now: datetime,
        cause: str,
        kind: str = "assigned",
        previous_rep_id: str | None = None,
        from_queue: bool = False,
    ) -> None:
        """What follows an assignment stored: ledger, rotation level, SLA timers, event
        (`before`: the handoff as it was, None when it was stored assigned at once)."""
        assert decision.rep_id is not None
        await repository.record_assignment(
            session, decision.rep_id, decision.team, decision.rotation_level
        )
        ROUTING_DECISIONS.labels(decision.rule).inc()
        if before is None or before.assigned_at is None:
            # Speed to lead counts every first assignment, queued time included.
            if assigned.qualifying_activity_at:
                SPEED_TO_LEAD.labels(assigned.tier).observe(
                    max((now - assigned.qualifying_activity_at).total_seconds(), 0)
                )
            if from_queue and assigned.created_at:
                QUEUED_TIME.labels(assigned.tier).observe(
                    max((now - assigned.created_at).total_seconds(), 0)
                )
        payload = _episode_payload(assigned)
        await timers.schedule_each(
            session,
            [
                (kind_, assigned.handoff_id, due, payload)
                for kind_, due in (
                    (WARNING, assigned.warn_at),
                    (ACCEPT_BREACH, assigned.accept_by),
                    (CONTACT_BREACH, assigned.contact_by),
                )
                if due is not None
            ],
        )
        await self._publish(
            session, assigned, kind, cause=cause, previous_rep_id=previous_rep_id, now=now
        )

    async def drain_queue(self, session: AsyncSession, team: str, now: datetime) -> int:
        """Give a team's queued leads, oldest first, to reps who can take them now."""
        reps = await repository.lock_reps(session)  # before the queued rows: the lock order
        queued = await repository.lock_queued(session, team)
        if not queued:
            return 0
        assigned = 0
        for handoff in queued:
            decision = self._reroute(handoff, reps, now)
            if not decision.rep_id:
                continue
            await self._assign(
                session,
                handoff,
                decision,
                reps,
                now,
                cause=f"queue:{now.isoformat()}",
                routing_reason=f"from the queue: {decision.reason}",
                from_queue=True,
            )
            reps = [
                replace(r, assigned_total=r.assigned_total + 1, open_handoffs=r.open_handoffs + 1)
                if r.rep_id == decision.rep_id
                else r
                for r in reps
            ]
            assigned += 1
        if assigned < len(queued):
            await self._schedule_queue_check(session, team, reps, now)
        self._gauges_stale = True
        return assigned

    async def drain_queues(self, session: AsyncSession, now: datetime) -> int:
        """Drain every team's queue (at start-up: the playbook may have added reps or room)."""
        return sum([await self.drain_queue(session, team, now) for team in self.teams])

    async def _schedule_queue_check(
        self, session: AsyncSession, team: str, reps: list[RepLoad], now: datetime
    ) -> None:
        """Wake the queue when the next free rep of the team starts work."""
        due = next_queue_check(team, reps, now)
        if due is not None:
            await timers.schedule(session, QUEUE_CHECK, team, due)

    async def on_queue_check(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """A rep's working hours began: give them what waits in the team's queue."""
        await self.drain_queue(session, timer.key, now)

    def _reroute(
        self,
        handoff: Handoff,
        reps: list[RepLoad],
        now: datetime,
    ) -> RoutingDecision:
        """Route a queued handoff's lead again."""
        return route_lead(
            handoff.lead_key,
            handoff.email,
            dict(handoff.attributes or {}),
            handoff.tier or "",
            reps,
            self.playbook,
            now,
        )

    async def set_availability(
        self, session: AsyncSession, rep_id: str, available: bool, now: datetime
    ) -> tuple[int, int]:
        """Mark a rep in or out of office; returns their ledger and leads given from the queue.

        A returning rep starts at the team's rotation level (see `levelled_ledger`).
        """
        rep = next((r for r in await repository.lock_reps(session) if r.rep_id == rep_id), None)
        if rep is None:
            raise RepNotFound(f"no rep {rep_id!r}", pointer="/rep_id")
        ledger = rep.assigned_total
        if available and not rep.available:
            levels = await repository.get_rotation_levels(session)
            ledger = levelled_ledger(rep.assigned_total, rep.weight, levels.get(rep.team))
        await repository.set_availability(session, rep_id, available, ledger)
        drained = await self.drain_queue(session, rep.team, now) if available else 0
        return ledger, drained

    # -- SLA timers -------------------------------------------------------------------------

    async def on_warning(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Before the accept deadline: tell the rep and the manager while there is time."""
        handoff = await repository.lock_handoff(session, timer.key)
        if _for_this_assignment(handoff, timer, {HandoffStatus.ASSIGNED}):
            assert handoff is not None
            await self._warn(session, handoff)

    async def _warn(self, session: AsyncSession, handoff: Handoff) -> None:
        # The id derives from the assignment (its accept_by), not from the timer's due time,
        # which a failed attempt moves: the warning timer and an overdue breach both send it,
        # and a retry of either, are one event.
        SLA_WARNINGS.labels(handoff.team, handoff.tier).inc()
        await self._publish(session, handoff, "sla_warning", cause=f"warn:{_episode(handoff)}")

    async def on_accept_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Not accepted in time: publish the breach, reassign or escalate, drain the queue."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _for_this_assignment(handoff, timer, {HandoffStatus.ASSIGNED}):
            return
        assert handoff is not None
        # The warning comes before the breach: if this assignment's warning has not fired yet
        # (another instance may hold it this moment, or a failed attempt moved it past the
        # breach), it goes out now; the warning timer then sends the same event or finds the
        # lead reassigned.
        warning = await timers.find(session, WARNING, timer.key)
        if warning is not None and _for_this_assignment(handoff, warning, {HandoffStatus.ASSIGNED}):
            await self._warn(session, handoff)
        cause = f"breach:{_episode(handoff)}"
        SLA_BREACHES.labels(handoff.team, handoff.tier, "accept").inc()
        SLA_OUTCOMES.labels(handoff.team, handoff.tier, "breached").inc()
        log.info("accept SLA breached", extra={"handoff_id": timer.key})
        handoff = await self._save(session, handoff, accept_breaches=handoff.accept_breaches + 1)
        await self._publish(session, handoff, "sla_breached", cause=cause, clock="accept")
        await timers.cancel(session, CONTACT_BREACH, timer.key)
        reps = await repository.lock_reps(session)
        action = after_accept_breach(handoff, reps, self.playbook, now)
        if isinstance(action, Escalate):
            team = self.teams[handoff.team]
            updated = await self._save(
                session,
                handoff,
                rep_id=None,
                status=HandoffStatus.ESCALATED,
                queue=team.manager_queue or f"{team.name}-manager",
                reassignments=handoff.reassignments + 1,
                previous_reps=action.previous_reps,
                routing_reason=f"escalated to the manager's queue after an SLA breach: "
                f"{action.why}",
            )
            await timers.cancel(session, WARNING, timer.key)
            await self._publish(
                session, updated, "reassigned", cause=cause, previous_rep_id=handoff.rep_id
            )
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

    async def on_contact_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Accepted (or not) but not contacted in time: publish the breach."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not _for_this_assignment(
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
            cause=f"contact:{_episode(handoff)}",
            clock="contact",
        )

    # -- feedback ---------------------------------------------------------------------------

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
            changes.update(closed_at=now, reason=feedback.reason)
            REJECTIONS.labels(handoff.team, feedback.reason).inc()
        else:
            changes.update(closed_at=handoff.closed_at or now, converted_to=feedback.converted_to)
            if money and feedback.converted_to:
                changes.update(money_columns(feedback.converted_to, money))
        if status in {HandoffStatus.REJECTED, HandoffStatus.CONVERTED}:
            for kind in SLA_TIMERS:
                await timers.cancel(session, kind, handoff.handoff_id)
        updated = await self._save(session, handoff, **changes)
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
        if action == FeedbackAction.REJECT:
            await self._publish(session, updated, "recycled", cause=cause)
        if handoff.status in OPEN_STATUSES and status not in OPEN_STATUSES:
            await self.drain_queue(session, handoff.team, now)  # the rep has a free slot now
        self._gauges_stale = True
        return updated

    # -- storing, publishing and gauges -------------------------------------------------------

    async def _save(self, session: AsyncSession, handoff: Handoff, **changes: Any) -> Handoff:
        """Write changes to a handoff and return it as it now stands."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}
        await repository.update_handoff(session, handoff.handoff_id, **values)
        current = {f.name: getattr(handoff, f.name) for f in fields(Handoff)}
        return Handoff.from_row({**current, **changes})

    async def _publish(
        self,
        session: AsyncSession,
        handoff: Handoff,
        kind: str,
        cause: str,
        previous_rep_id: str | None = None,
        clock: SlaClock | None = None,
        now: datetime | None = None,
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
                    }
                ).model_dump(mode="json"),
            ),
        )
        HANDOFF_EVENTS.labels(handoff.team, handoff.tier or "none", kind).inc()

    def committed(self) -> None:
        """After a commit: refresh the gauges if a transaction may have changed handoffs."""
        if self._gauges_stale:
            self._gauges_wake.set()

    async def keep_gauges(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Refresh the open-handoff and queue gauges after commits that changed handoffs.

        Off the transactions: the count over the handoffs was one more round trip in each,
        on the speed-to-lead path among them.
        """
        while True:
            await self._gauges_wake.wait()
            self._gauges_wake.clear()
            self._gauges_stale = False
            try:
                async with sessions() as session:
                    await self.observe(session)
            except Exception as exc:  # the database away: the next commit tries again
                log.warning("handoff gauges not refreshed: %s", exc)

    async def observe(self, session: AsyncSession) -> None:
        """Refresh the open-handoff and queue gauges from the table."""
        counts, waiting = await repository.count_open_and_waiting(session)
        for tier in self.playbook.taxonomy.tiers:
            OPEN_HANDOFFS.labels(tier.name).set(counts.get(tier.name, 0))
        for team in self.playbook.routing.teams:
            for queue in (
                team.fallback_queue or f"{team.name}-queue",
                team.manager_queue or f"{team.name}-manager",
            ):
                for tier in self.playbook.taxonomy.tiers:
                    QUEUE_SIZE.labels(queue, tier.name).set(waiting.get((queue, tier.name), 0))


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
        elif event.type == LIFECYCLE_ERASED:
            handoff_locked = True
        elif handoff_locked and event.type.startswith(LIFECYCLE_PREFIX):
            if event.data.get("transition") in ROUTED_TRANSITIONS:
                return True
    return False


# -- which assignment an SLA timer belongs to ---------------------------------------------------


def _episode(handoff: Handoff) -> str:
    """The assignment an SLA clock runs for, named by its accept deadline (a reassignment
    starts a new clock, so a new deadline)."""
    assert handoff.accept_by is not None
    return handoff.accept_by.isoformat()


def _episode_payload(handoff: Handoff) -> dict[str, Any] | None:
    return {"accept_by": _episode(handoff)} if handoff.accept_by else None


def _for_this_assignment(
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
    episode = timer.payload.get("accept_by")
    return episode is None or datetime.fromisoformat(episode) == handoff.accept_by
