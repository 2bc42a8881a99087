"""Handoff handlers: route qualified leads, run SLA clocks, take sales feedback."""

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import erasure, repository
from services.handoff.lifecycle import OPEN, InvalidFeedback, deadlines, next_status
from services.handoff.routing import RepLoad, RoutingDecision, route_lead
from shared import audit, outbox, timers
from shared.consumer import Delivered
from shared.db import db_now
from shared.errors import NotFound
from shared.events import (
    FEEDBACK_PREFIX,
    HANDOFF_PREFIX,
    LIFECYCLE_ERASED,
    LIFECYCLE_PREFIX,
    CloudEvent,
    ErasedData,
    FeedbackData,
    HandoffData,
    LifecycleData,
    derived_event_id,
)
from shared.playbook import Playbook
from shared.playbook.routing import WorkingHours
from shared.timers import Timer

log = logging.getLogger(__name__)

RELAY = "handoff"
WARNING, ACCEPT_BREACH, CONTACT_BREACH = (
    "handoff.sla_warning",
    "handoff.accept_breach",
    "handoff.contact_breach",
)
ROUTED_TRANSITIONS = {"became_mql"}
SLA_BUCKETS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)

HANDOFFS = Counter(
    "leadrouter_handoffs_total",
    "Handoff events, by team, tier and outcome",
    ["team", "tier", "outcome"],
)
ROUTING = Counter("leadrouter_routing_decisions_total", "Routing decisions, by rule", ["rule"])
SLA_WARNINGS = Counter("leadrouter_sla_warnings_total", "SLA warnings sent", ["team", "tier"])
SLA_BREACHES = Counter(
    "leadrouter_sla_breaches_total", "SLA deadlines missed, by clock", ["team", "tier", "clock"]
)
TIME_TO_ACCEPT = Histogram(
    "leadrouter_time_to_accept_seconds", "Assigned to accepted", ["tier"], buckets=SLA_BUCKETS
)
TIME_TO_CONTACT = Histogram(
    "leadrouter_time_to_first_contact_seconds",
    "Assigned to first contact",
    ["tier"],
    buckets=SLA_BUCKETS,
)
SPEED_TO_LEAD = Histogram(
    "leadrouter_speed_to_lead_seconds",
    "From the qualifying activity to the handoff to a rep",
    ["tier"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400),
)
OPEN_HANDOFFS = Gauge("leadrouter_handoffs_open", "Open handoffs, by tier", ["tier"])
QUEUED = Gauge(
    "leadrouter_handoff_queue_size",
    "Leads waiting in a queue, by queue and tier",
    ["queue", "tier"],
)
SLA_OUTCOMES = Counter(
    "leadrouter_sla_outcomes_total",
    "Accept SLA outcomes: met (accepted in time) or breached; attainment is met / all",
    ["team", "tier", "outcome"],
)
FEEDBACK_REFUSED = Counter(
    "leadrouter_feedback_refused_total",
    "Sales feedback that did not apply (unknown handoff, wrong state)",
    ["action"],
)


def hours_of(reps: list[RepLoad], rep_id: str | None) -> WorkingHours | None:
    """A rep's working hours, if they have any."""
    return next((r.working_hours for r in reps if r.rep_id == rep_id), None)


class HandoffNotFound(NotFound):
    """No handoff has this id."""


class HandoffService:
    """Everything handoff does to its tables, each call inside the caller's transaction."""

    def __init__(self, playbook: Playbook, handoffs_topic: str, feedback_topic: str) -> None:
        self.playbook = playbook
        self.handoffs_topic = handoffs_topic
        self.feedback_topic = feedback_topic
        self.teams = {t.name: t for t in playbook.routing.teams}
        for team in self.teams:  # exported at 0 from the start, so ratios and increase() work
            for tier in playbook.sla.tiers:
                for outcome in ("met", "breached"):
                    SLA_OUTCOMES.labels(team, tier, outcome)

    # -- consumer ---------------------------------------------------------------------------

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        now = await db_now(session)
        for delivered in batch:
            event = delivered.event
            if event.type == LIFECYCLE_ERASED:
                erased = ErasedData.model_validate(event.data)
                await erasure.erase_lead(
                    session,
                    erased.lead_key,
                    now,
                    RELAY,
                    [WARNING, ACCEPT_BREACH, CONTACT_BREACH],
                )
            elif event.type.startswith(LIFECYCLE_PREFIX):
                lead = LifecycleData.model_validate(event.data)
                await repository.record_funnel_event(
                    session, event.id, lead.lead_key, lead.transition, event.time
                )
                if lead.transition in ROUTED_TRANSITIONS:
                    await self.route(session, event, lead, now)
            elif event.type.startswith(FEEDBACK_PREFIX):
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
                except (InvalidFeedback, HandoffNotFound) as exc:
                    FEEDBACK_REFUSED.labels(
                        action if action in {"accept", "contact", "reject", "convert"} else "other"
                    ).inc()
                    log.warning("sales feedback refused: %s", exc, extra={"event_id": event.id})
            else:
                raise ValueError(f"handoff does not handle events of type {event.type!r}")
        await self.observe(session)

    # -- routing ----------------------------------------------------------------------------

    async def route(
        self, session: AsyncSession, event: CloudEvent, lead: LifecycleData, now: datetime
    ) -> None:
        """Route a newly qualified lead, once per lifecycle event."""
        tier = lead.tier or self.playbook.taxonomy.tier_for(lead.score)
        reps = await repository.lock_reps(session)
        decision = route_lead(
            lead.lead_key, lead.email, lead.attributes, tier, reps, self.playbook, now
        )
        handoff_id = derived_event_id("handoff", event.id)
        team = self.teams[decision.team]
        queue = None if decision.rep_id else (team.fallback_queue or f"{team.name}-queue")
        created = await repository.insert_handoff(
            session,
            handoff_id=handoff_id,
            lead_key=lead.lead_key,
            **self._clock_fields(tier, decision.rep_id, reps, now),
            team=decision.team,
            queue=queue,
            status="assigned" if decision.rep_id else "queued",
            tier=tier,
            score=lead.score,
            email=lead.email,
            attributes=lead.attributes,
            explanation=lead.explanation,
            routing_rule=decision.rule,
            routing_reason=decision.reason,
            skipped=decision.skipped,
            lifecycle_event_id=event.id,
            qualifying_activity_at=lead.qualifying_activity_at,
            breached=False,
            reassignments=0,
            previous_reps=[],
        )
        if not created:
            return  # this lifecycle event was routed already
        ROUTING.labels(decision.rule).inc()
        log.info(
            "routed by rule %s to team %s",
            decision.rule,
            decision.team,
            extra={"handoff_id": handoff_id, "event_id": event.id},
        )
        handoff = await repository.lock_handoff(session, handoff_id)
        assert handoff is not None
        if decision.rep_id:
            await repository.record_assignment(session, decision.rep_id)
            await self._start_clock(session, handoff)
            if lead.qualifying_activity_at:
                SPEED_TO_LEAD.labels(tier).observe(
                    max((now - lead.qualifying_activity_at).total_seconds(), 0)
                )
        await self._publish(
            session, handoff, "assigned" if decision.rep_id else "queued", cause=event.id
        )

    async def drain_queue(self, session: AsyncSession, team: str, now: datetime) -> int:
        """Give a team's queued leads, oldest first, to reps who can take them now."""
        queued = await repository.lock_queued(session, team)
        if not queued:
            return 0
        reps = await repository.lock_reps(session)
        assigned = 0
        for handoff in queued:
            decision = self._reroute(handoff, reps, now)
            if not decision.rep_id:
                continue
            await repository.update_handoff(
                session,
                handoff["handoff_id"],
                **self._clock_fields(handoff["tier"], decision.rep_id, reps, now),
                team=decision.team,
                queue=None,
                status="assigned",
                routing_rule=decision.rule,
                routing_reason=f"from the queue: {decision.reason}",
                skipped=decision.skipped,
            )
            await repository.record_assignment(session, decision.rep_id)
            reps = [
                replace(r, assigned_total=r.assigned_total + 1, open_handoffs=r.open_handoffs + 1)
                if r.rep_id == decision.rep_id
                else r
                for r in reps
            ]
            updated = await repository.lock_handoff(session, handoff["handoff_id"])
            assert updated is not None
            await self._start_clock(session, updated)
            await self._publish(session, updated, "assigned", cause=f"queue:{now.isoformat()}")
            ROUTING.labels(decision.rule).inc()
            assigned += 1
        await self.observe(session)
        return assigned

    def _reroute(
        self,
        handoff: dict[str, Any],
        reps: list[RepLoad],
        now: datetime,
        exclude: frozenset[str] = frozenset(),
    ) -> RoutingDecision:
        """Route an existing handoff's lead again (from a queue, or after a breach)."""
        return route_lead(
            handoff["lead_key"],
            handoff["email"],
            handoff["attributes"],
            handoff["tier"],
            reps,
            self.playbook,
            now,
            exclude,
        )

    def _clock_fields(
        self, tier: str, rep_id: str | None, reps: list[RepLoad], now: datetime
    ) -> dict[str, Any]:
        """The assignment columns: rep, time and the SLA deadlines it starts (none if queued)."""
        clock = deadlines(tier, now, self.playbook, hours_of(reps, rep_id)) if rep_id else None
        return {
            "rep_id": rep_id,
            "assigned_at": now if rep_id else None,
            "warn_at": clock.warn_at if clock else None,
            "accept_by": clock.accept_by if clock else None,
            "contact_by": clock.contact_by if clock else None,
        }

    async def _start_clock(self, session: AsyncSession, handoff: dict[str, Any]) -> None:
        key = handoff["handoff_id"]
        for kind, due in (
            (WARNING, handoff["warn_at"]),
            (ACCEPT_BREACH, handoff["accept_by"]),
            (CONTACT_BREACH, handoff["contact_by"]),
        ):
            if due is not None:
                await timers.schedule(session, kind, key, due)

    async def _stop_clock(self, session: AsyncSession, handoff_id: str, *kinds: str) -> None:
        for kind in kinds:
            await timers.cancel(session, kind, handoff_id)

    # -- SLA timers -------------------------------------------------------------------------

    async def on_warning(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Before the accept deadline: tell the rep and the manager while there is time."""
        handoff = await repository.lock_handoff(session, timer.key)
        if handoff and handoff["status"] == "assigned":
            SLA_WARNINGS.labels(handoff["team"], handoff["tier"]).inc()
            await self._publish(
                session, handoff, "sla_warning", cause=f"warn:{timer.due_at.isoformat()}"
            )

    async def on_accept_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Not accepted in time: publish the breach and escalate by policy."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not handoff or handoff["status"] != "assigned":
            return
        cause = f"breach:{timer.due_at.isoformat()}"
        SLA_BREACHES.labels(handoff["team"], handoff["tier"], "accept").inc()
        log.info("accept SLA breached", extra={"handoff_id": timer.key})
        SLA_OUTCOMES.labels(handoff["team"], handoff["tier"], "breached").inc()
        await repository.update_handoff(session, timer.key, breached=True)
        handoff["breached"] = True
        await self._publish(session, handoff, "sla_breached", cause=cause)
        await self._stop_clock(session, timer.key, CONTACT_BREACH)
        previous = [*handoff["previous_reps"], handoff["rep_id"]]
        decision = None
        if handoff["reassignments"] < self.playbook.sla.max_reassignments:
            reps = await repository.lock_reps(session)
            decision = self._reroute(handoff, reps, now, exclude=frozenset(previous))
        team = self.teams[handoff["team"]]
        if decision and decision.rep_id:
            values = dict(
                **self._clock_fields(handoff["tier"], decision.rep_id, reps, now),
                team=decision.team,
                reassignments=handoff["reassignments"] + 1,
                previous_reps=previous,
                routing_reason=f"reassigned after an SLA breach: {decision.reason}",
            )
            await repository.record_assignment(session, decision.rep_id)
        else:
            values = dict(
                rep_id=None,
                status="escalated",
                queue=team.manager_queue or f"{team.name}-manager",
                reassignments=handoff["reassignments"] + 1,
                previous_reps=previous,
                routing_reason="escalated to the manager's queue after an SLA breach",
            )
        await repository.update_handoff(session, timer.key, **values)
        updated = await repository.lock_handoff(session, timer.key)
        assert updated is not None
        if updated["rep_id"]:
            await self._start_clock(session, updated)
        await self._publish(
            session, updated, "reassigned", cause=cause, previous_rep_id=handoff["rep_id"]
        )
        await self.observe(session)

    async def on_contact_breach(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Accepted (or not) but not contacted in time: publish the breach."""
        handoff = await repository.lock_handoff(session, timer.key)
        if not handoff or handoff["status"] not in {"assigned", "accepted"}:
            return
        SLA_BREACHES.labels(handoff["team"], handoff["tier"], "contact").inc()
        await repository.update_handoff(session, timer.key, breached=True)
        await self._publish(
            session, handoff, "sla_breached", cause=f"contact:{timer.due_at.isoformat()}"
        )

    # -- feedback ---------------------------------------------------------------------------

    async def apply_feedback(
        self, session: AsyncSession, action: str, feedback: FeedbackData, now: datetime, cause: str
    ) -> dict[str, Any]:
        """Accept, contact, reject or convert a handoff (HTTP and Kafka both come here)."""
        handoff = await repository.lock_handoff(session, feedback.handoff_id)
        if handoff is None:
            raise HandoffNotFound(f"no handoff {feedback.handoff_id!r}")
        status = next_status(
            handoff["status"], action, self.playbook, feedback.reason, feedback.converted_to
        )
        values: dict[str, Any] = {"status": status}
        if (
            action in {"accept", "contact"}
            and handoff["accepted_at"] is None
            and handoff["accept_by"]
        ):
            met = now <= handoff["accept_by"] and not handoff["breached"]
            if met:  # a breach was counted when its timer fired
                SLA_OUTCOMES.labels(handoff["team"], handoff["tier"], "met").inc()
        if action == "accept":
            values["accepted_at"] = now
            TIME_TO_ACCEPT.labels(handoff["tier"]).observe(
                (now - handoff["assigned_at"]).total_seconds()
            )
            await self._stop_clock(session, feedback.handoff_id, WARNING, ACCEPT_BREACH)
        elif action == "contact":
            values["contacted_at"] = now
            if handoff["accepted_at"] is None:
                values["accepted_at"] = now  # contacting a lead accepts it
            TIME_TO_CONTACT.labels(handoff["tier"]).observe(
                (now - handoff["assigned_at"]).total_seconds()
            )
            await self._stop_clock(
                session, feedback.handoff_id, WARNING, ACCEPT_BREACH, CONTACT_BREACH
            )
        else:
            values.update(closed_at=now, reason=feedback.reason, converted_to=feedback.converted_to)
            await self._stop_clock(
                session, feedback.handoff_id, WARNING, ACCEPT_BREACH, CONTACT_BREACH
            )
        await repository.update_handoff(session, feedback.handoff_id, **values)
        log.info("feedback %s: now %s", action, status, extra={"handoff_id": feedback.handoff_id})
        updated = {**handoff, **values}
        await self._publish(session, updated, status, cause=cause)
        if action == "reject":
            await self._publish(session, updated, "recycled", cause=cause)
        if status in {"rejected", "converted"}:  # the rep has room for a queued lead now
            await self.drain_queue(session, handoff["team"], now)
        return updated

    # -- publishing and gauges ----------------------------------------------------------------

    async def _publish(
        self,
        session: AsyncSession,
        handoff: dict[str, Any],
        kind: str,
        cause: str,
        previous_rep_id: str | None = None,
    ) -> None:
        rep_names = {r.id: r.name for t in self.playbook.routing.teams for r in t.reps}
        await outbox.add_event(
            session,
            RELAY,
            self.handoffs_topic,
            CloudEvent(
                id=derived_event_id("handoff", kind, handoff["handoff_id"], cause),
                source="leadrouter/handoff",
                type=HANDOFF_PREFIX + kind,
                time=await db_now(session),
                subject=handoff["lead_key"],
                data=HandoffData(
                    handoff_id=handoff["handoff_id"],
                    status=handoff["status"],
                    lead_key=handoff["lead_key"],
                    rep_id=handoff["rep_id"],
                    rep_name=rep_names.get(handoff["rep_id"] or ""),
                    team=handoff["team"],
                    email=handoff["email"],
                    attributes=handoff["attributes"],
                    score=handoff["score"],
                    stage="mql",
                    explanation=handoff["explanation"],
                    routing_reason=handoff["routing_reason"],
                    reason=handoff.get("reason"),
                    converted_to=handoff.get("converted_to"),
                    tier=handoff["tier"],
                    queue=handoff["queue"],
                    previous_rep_id=previous_rep_id,
                    accept_by=handoff["accept_by"],
                    contact_by=handoff["contact_by"],
                    qualifying_activity_at=handoff["qualifying_activity_at"],
                ).model_dump(mode="json"),
            ),
        )
        HANDOFFS.labels(handoff["team"], handoff["tier"] or "none", kind).inc()

    async def observe(self, session: AsyncSession) -> None:
        """Refresh the open-handoff and queue gauges from the table."""
        rows = await session.execute(
            select(repository.handoffs.c.tier, func.count())
            .where(repository.handoffs.c.status.in_(sorted(OPEN)))
            .group_by(repository.handoffs.c.tier)
        )
        counts = dict(rows.all())
        for tier in self.playbook.taxonomy.tiers:
            OPEN_HANDOFFS.labels(tier.name).set(counts.get(tier.name, 0))
        rows = await session.execute(
            select(repository.handoffs.c.queue, repository.handoffs.c.tier, func.count())
            .where(repository.handoffs.c.status.in_(["queued", "escalated"]))
            .group_by(repository.handoffs.c.queue, repository.handoffs.c.tier)
        )
        queued = {(queue, tier): count for queue, tier, count in rows.all()}
        for team in self.playbook.routing.teams:
            for queue in (
                team.fallback_queue or f"{team.name}-queue",
                team.manager_queue or f"{team.name}-manager",
            ):
                for tier in self.playbook.taxonomy.tiers:
                    QUEUED.labels(queue, tier.name).set(queued.get((queue, tier.name), 0))
