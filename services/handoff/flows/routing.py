"""Routing: a newly qualified lead to a rep (or the team's queue), assignments and their SLA
clocks, and draining a team's queue when a rep has room."""

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import policy_repository, repository
from services.handoff.flows.base import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    QUEUE_CHECK,
    WARNING,
    FlowBase,
    episode_payload,
)
from services.handoff.metrics import (
    QUEUED_TIME,
    ROUTING_DECISIONS,
    ROUTING_SUPPRESSED,
    SPEED_TO_LEAD,
)
from services.handoff.policies import email_domain, existing_owner, routing_suppressed
from services.handoff.routing import (
    RepLoad,
    RepScope,
    RoutingDecision,
    next_queue_check,
    route_lead,
    routing_scope,
)
from services.handoff.status import Handoff, HandoffStatus, deadlines
from shared import timers
from shared.events import CloudEvent, LifecycleData, derived_event_id
from shared.timers import Timer

log = logging.getLogger(__name__)


@dataclass
class HeldReps:
    """The reps a transaction locked for a run of routings, kept current by its own
    assignments (None: lock and read them). Nothing else changes their ledgers meanwhile
    (the rows are locked); a handoff another transaction closes meanwhile counts as open
    until the next read, as in `drain_queue`."""

    loads: list[RepLoad] | None = None

    def assigned(self, rep_id: str) -> None:
        """One more handoff, open, for the rep."""
        if self.loads is not None:
            self.loads = [
                replace(r, assigned_total=r.assigned_total + 1, open_handoffs=r.open_handoffs + 1)
                if r.rep_id == rep_id
                else r
                for r in self.loads
            ]


class RoutingFlow(FlowBase):
    """Route leads, give handoffs to reps, drain the queues."""

    @property
    def _suppressing(self) -> bool:
        """Whether a reject policy can hold a lead back (else routing skips the lookup)."""
        return any(
            p.policy in {"suppress", "disqualify"}
            for p in self.playbook.sla.reject_policies.values()
        )

    async def route(
        self,
        session: AsyncSession,
        event: CloudEvent,
        lead: LifecycleData,
        now: datetime | None = None,
        why: str | None = None,
        scope: RepScope | None = None,
        held: HeldReps | None = None,
    ) -> datetime:
        """Route a newly qualified lead, once per lifecycle event; returns the `now` it used
        (given, or the database's clock read with the reps: one round trip fewer). `why`
        opens the routing reason (a revisit says so). The reps locked are the lead's
        `routing_scope`, or `scope` (a batch that routes several leads locks their union at
        its first, so that it takes the reps in one rep_id order); `held`, the reps a run of
        routings in this transaction locked already, read no more."""
        tier = self.routing_tier(lead)
        if held is not None and held.loads is not None and now is not None:
            reps = held.loads
        else:
            reps, db_time = await repository.lock_reps_and_clock(
                session, scope or self.routing_scope(lead)
            )
            now = now or db_time
            if held is not None:
                held.loads = reps
        if self._suppressing and routing_suppressed(
            await policy_repository.latest_suppression(session, lead.lead_key), lead.fit_score, now
        ):
            ROUTING_SUPPRESSED.inc()
            log.info(
                "not routed: a reject policy holds the lead back", extra={"event_id": event.id}
            )
            return now
        decision = route_lead(
            lead.lead_key,
            lead.email,
            lead.attributes,
            tier,
            reps,
            self.playbook,
            now,
            previous=await self._existing_owner(session, lead, now),
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
        if why:
            values["routing_reason"] = f"{why}: {values['routing_reason']}"
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
            fit_score=lead.fit_score,
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
            if held is not None:
                held.assigned(decision.rep_id)
        else:
            ROUTING_DECISIONS.labels(decision.rule).inc()
            await self._publish(session, handoff, "queued", cause=event.id, now=now)
            await self._schedule_queue_check(session, decision.team, reps, now)
        return now

    def routing_tier(self, lead: LifecycleData) -> str:
        """The tier a lead is routed with: its own, else the one its score falls in."""
        return lead.tier or self.playbook.taxonomy.tier_for(lead.score)

    def routing_scope(self, lead: LifecycleData) -> RepScope:
        """The reps routing this lead locks (`routing.routing_scope`)."""
        return routing_scope(lead.email, lead.attributes, self.routing_tier(lead), self.playbook)

    async def _existing_owner(
        self, session: AsyncSession, lead: LifecycleData, now: datetime
    ) -> tuple[str, str] | None:
        """The rep who had the lead or its account recently (routing.existing_owner)."""
        days = self.playbook.routing.existing_owner.days
        if days is None:
            return None  # off: the speed-to-lead path pays no lookup
        domain = email_domain(lead.email)
        recent = await policy_repository.recent_handoffs(
            session, lead.lead_key, domain, now - timedelta(days=days)
        )
        owner = existing_owner(lead.lead_key, domain, recent, self.playbook, now)
        return (owner.rep_id, owner.why) if owner else None

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
        await self._schedule_sla_timers(session, assigned)
        await self._publish(
            session, assigned, kind, cause=cause, previous_rep_id=previous_rep_id, now=now
        )

    async def _schedule_sla_timers(self, session: AsyncSession, handoff: Handoff) -> None:
        """Set the warning and breach timers of the handoff's current SLA clock."""
        payload = episode_payload(handoff)
        await timers.schedule_each(
            session,
            [
                (kind_, handoff.handoff_id, due, payload)
                for kind_, due in (
                    (WARNING, handoff.warn_at),
                    (ACCEPT_BREACH, handoff.accept_by),
                    (CONTACT_BREACH, handoff.contact_by),
                )
                if due is not None
            ],
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

    def _reroute(self, handoff: Handoff, reps: list[RepLoad], now: datetime) -> RoutingDecision:
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
