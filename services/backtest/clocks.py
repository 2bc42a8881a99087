"""Pure simulated handoff desk: the backtest's handoffs, reps, queues and clocks, at event time.

What live handoff processing does after routing is decided here by the same pure functions
(`deadlines`, `raise_tier`, `after_accept_breach`, `manager_queue_deadlines`,
`manager_queue_outcome`, `stale_deadlines`, `reject_outcome`, `routing_suppressed`,
`existing_owner`, `route_lead`). Live durable timers are a heap of due timers here, fired in
due order before each later event of the history; each timer names the clock it belongs to
(an accept deadline, a queue deadline, a last feedback), and one that a later change made
stale is dropped, as live handlers drop theirs. Sales' own feedback (accept, contact, reject,
convert) is a fact of the history, applied to the lead's simulated handoff when the move is
possible. No I/O and no clock.
"""

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from services.handoff.policies import (
    RecentHandoff,
    Recycle,
    Suppression,
    email_domain,
    existing_owner,
    last_feedback_at,
    manager_queue_deadlines,
    manager_queue_outcome,
    raised_stale_deadlines,
    reject_outcome,
    routing_suppressed,
    stale_deadlines,
)
from services.handoff.routing import (
    RepLoad,
    RoutingDecision,
    next_queue_check,
    route_lead,
    why_not,
)
from services.handoff.status import (
    FEEDBACK_MOVES,
    OPEN_STATUSES,
    RAISABLE_STATUSES,
    Deadlines,
    Escalate,
    Handoff,
    HandoffStatus,
    accept_sla_outcome,
    after_accept_breach,
    deadlines,
    raise_tier,
)
from services.scoring.core import from_us, to_us
from shared.playbook import Playbook
from shared.vocabulary import FeedbackAction

ACCEPT_BREACH, QUEUE_CHECK = "accept_breach", "queue_check"
MANAGER_WARNING, MANAGER_BREACH = "manager_queue_warning", "manager_queue_breach"
STALE_REMINDER, STALE_RECYCLE, REVISIT = "stale_reminder", "stale_recycle", "revisit"
R = TypeVar("R")
# How many of a lead's or an account's latest handoffs the existing-owner policy looks at
# (the live query's limit).
RECENT = 20


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Every routed handoff starts from this one (its required fields replaced): a 45-field frozen
# dataclass's `__init__` sets each field through `object.__setattr__`.
NEW_HANDOFF = Handoff("", "", HandoffStatus.QUEUED, "", None, 0, "")


def _durations(clock: Deadlines) -> tuple[timedelta, timedelta, timedelta]:
    """An SLA clock started at the epoch as durations from its start."""
    return (clock.warn_at - EPOCH, clock.accept_by - EPOCH, clock.contact_by - EPOCH)


def _times(clock: Deadlines | None) -> tuple[datetime | None, datetime | None, datetime | None]:
    """An SLA clock's warning, accept and contact times (None: no SLA)."""
    if clock is None:
        return None, None, None
    return clock.warn_at, clock.accept_by, clock.contact_by


def changed(record: R, **changes: Any) -> R:
    """`dataclasses.replace` for the desk's frozen records without slots (Handoff, RepLoad,
    SimulatedHandoff), without re-running `__init__`: the desk replaces them a few times per
    handoff, and `replace` of a 45-field Handoff was a quarter of a backtest's time."""
    new = object.__new__(type(record))
    # A copied dict given to the record (a third faster than filling its empty one).
    values = record.__dict__.copy()
    values.update(changes)
    object.__setattr__(new, "__dict__", values)
    return new


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """Something a clock or a policy did to a simulated handoff, for the report's counts.

    kind: tier_raised, sla_breached, reassigned, escalated, manager_queue_warning,
    manager_queue_breached, stale_reminder, recycled (detail: reason/policy), revisited,
    suppressed (the lead qualified but a reject policy held it back).
    """

    at: datetime
    lead_key: str
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class SimulatedHandoff:
    """Where a qualified lead went (rep None: it waited in the team's queue), and how its
    handoff ended up when the history ran out."""

    lead_key: str
    at: datetime
    team: str
    rep_id: str | None
    tier: str
    assigned_at: datetime | None
    rule: str = ""  # the routing rule (or "account owner", "existing owner")
    status: str = HandoffStatus.ASSIGNED
    reason: str | None = None
    recycle_policy: str | None = None
    closed_at: datetime | None = None
    raised_to: str | None = None  # the tier a rise took the open handoff to


@dataclass(frozen=True)
class Routed:
    """A lead to route: what the handoff knows of it (a qualification, or a revisit)."""

    lead_key: str
    email: str | None
    attributes: dict[str, Any]
    tier: str
    score: int
    fit_score: float | None


class Desk:
    """The handoff service as the backtest runs it: one playbook, reps, handoffs, timers."""

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self.loads = {
            rep.id: RepLoad(
                rep_id=rep.id,
                name=rep.name,
                team=team.name,
                weight=rep.weight,
                assigned_total=0,
                capacity=rep.capacity,
                working_hours=rep.working_hours,
            )
            for team in playbook.routing.teams
            for rep in team.reps
        }
        self.teams = {t.name: t for t in playbook.routing.teams}
        self.handoffs: list[Handoff] = []
        self.routed: list[SimulatedHandoff] = []
        self.events: list[ClockEvent] = []
        # Heap of due timers: (due in µs, sequence, kind, handoff index or team, clock token).
        self.due: list[tuple[int, int, str, Any, Any]] = []
        self._sequence = 0
        self._queue_check: dict[str, int] = {}  # team -> its one pending queue check (µs)
        # (handoff index, kind) -> when its pending stale timer is due (µs): a tier raise
        # moves a stale timer, as live sets the (kind, key) timer anew.
        self._stale_at: dict[tuple[int, str], int] = {}
        self.queued: dict[str, list[int]] = {}  # team -> its queued handoffs, oldest first
        self.by_lead: dict[str, list[int]] = {}
        self.by_domain: dict[str, list[int]] = {}
        self.suppressions: dict[str, Suppression] = {}
        # Without working hours to count, a tier's SLA clock is the assignment time plus the
        # same durations: `deadlines` works them out once per tier.
        self._counting_all_time = not playbook.sla.working_hours_only
        self._sla_after = {
            tier: _durations(clock)
            for tier in playbook.sla.tiers
            if (clock := deadlines(tier, EPOCH, playbook)) is not None
        }
        policies = playbook.sla.reject_policies.values()
        self._suppressing = any(p.policy in {"suppress", "disqualify"} for p in policies)

    # -- routing ---------------------------------------------------------------------------

    def route(self, lead: Routed, now: datetime, why: str | None = None) -> None:
        """Route a qualified lead: to a rep with a fresh SLA clock, or to the team's queue."""
        if self._suppressing and routing_suppressed(
            self.suppressions.get(lead.lead_key), lead.fit_score, now
        ):
            self.events.append(ClockEvent(now, lead.lead_key, "suppressed"))
            return
        decision = route_lead(
            lead.lead_key,
            lead.email,
            lead.attributes,
            lead.tier,
            list(self.loads.values()),
            self.playbook,
            now,
            previous=self._existing_owner(lead.lead_key, lead.email, now),
        )
        index = len(self.handoffs)
        handoff = changed(
            NEW_HANDOFF,
            handoff_id=str(index),
            lead_key=lead.lead_key,
            status=HandoffStatus.QUEUED,
            team=decision.team,
            tier=lead.tier,
            score=lead.score,
            routing_reason=f"{why}: {decision.reason}" if why else decision.reason,
            email=lead.email,
            attributes=lead.attributes,
            routing_rule=decision.rule,
            created_at=now,
            fit_score=lead.fit_score,
        )
        self.handoffs.append(handoff)
        self.routed.append(
            SimulatedHandoff(
                lead.lead_key, now, decision.team, None, lead.tier, None, decision.rule, "queued"
            )
        )
        self.by_lead.setdefault(lead.lead_key, []).append(index)
        domain = email_domain(lead.email)
        if domain:
            self.by_domain.setdefault(domain, []).append(index)
        if decision.rep_id is None:
            self.queued.setdefault(decision.team, []).append(index)
            self._schedule_queue_check(decision.team, now)
        else:
            self._assign(index, decision, now)

    def _existing_owner(
        self, lead_key: str, email: str | None, now: datetime
    ) -> tuple[str, str] | None:
        if self.playbook.routing.existing_owner.days is None:
            return None
        domain = email_domain(email)
        indexes = self.by_lead.get(lead_key, [])[-RECENT:]
        if domain:
            indexes = indexes + self.by_domain.get(domain, [])[-RECENT:]
        recent = [
            RecentHandoff(h.lead_key, email_domain(h.email), h.rep_id, h.assigned_at, h.closed_at)
            for h in (self.handoffs[i] for i in dict.fromkeys(indexes))
            if h.rep_id is not None and h.assigned_at is not None
        ]
        owner = existing_owner(lead_key, domain, recent, self.playbook, now)
        return (owner.rep_id, owner.why) if owner else None

    def _assign(self, index: int, decision: RoutingDecision, now: datetime, **changes: Any) -> None:
        """Give handoff `index` to the decision's rep: a slot taken, a fresh SLA clock."""
        assert decision.rep_id is not None
        rep = self.loads[decision.rep_id]
        self.loads[rep.rep_id] = changed(
            rep, assigned_total=rep.assigned_total + 1, open_handoffs=rep.open_handoffs + 1
        )
        handoff = self.handoffs[index]
        tier = handoff.tier or ""
        durations = self._sla_after.get(tier) if self._counting_all_time else None
        if durations is not None:
            times: tuple[datetime | None, ...] = tuple(now + after for after in durations)
        else:  # working time to count, or no SLA for the tier
            times = _times(deadlines(tier, now, self.playbook, rep.working_hours))
        warn_at, accept_by, contact_by = times
        self.handoffs[index] = changed(
            handoff,
            rep_id=rep.rep_id,
            team=decision.team,
            queue=None,
            status=HandoffStatus.ASSIGNED,
            assigned_at=now,
            warn_at=warn_at,
            accept_by=accept_by,
            contact_by=contact_by,
            routing_rule=decision.rule,
            **changes,
        )
        if accept_by is not None:
            self._schedule(accept_by, ACCEPT_BREACH, index, accept_by)
        first = self.routed[index]
        if first.rep_id is None:  # the routing record keeps the first rep who had the lead
            self.routed[index] = changed(
                first, rep_id=rep.rep_id, assigned_at=now, rule=decision.rule, team=decision.team
            )

    def _release(self, handoff: Handoff) -> None:
        """The handoff's rep has a free slot again."""
        if handoff.rep_id is not None and handoff.status in OPEN_STATUSES:
            rep = self.loads[handoff.rep_id]
            self.loads[rep.rep_id] = changed(rep, open_handoffs=max(rep.open_handoffs - 1, 0))

    def drain(self, team: str, now: datetime) -> None:
        """Give the team's queued leads, oldest first, to reps who can take them now."""
        waiting = self.queued.get(team)
        if not waiting:
            return
        if all(why_not(rep, now) for rep in self.loads.values()):
            # Nobody can take a lead now (full, away or off shift): routing each queued lead
            # again would queue every one of them again.
            self._schedule_queue_check(team, now)
            return
        left = []
        for index in waiting:
            h = self.handoffs[index]
            decision = route_lead(
                h.lead_key,
                h.email,
                dict(h.attributes or {}),
                h.tier or "",
                list(self.loads.values()),
                self.playbook,
                now,
            )
            if decision.rep_id is None:
                left.append(index)
                continue
            self._assign(index, decision, now, routing_reason=f"from the queue: {decision.reason}")
        self.queued[team] = left
        if left:
            self._schedule_queue_check(team, now)

    def _schedule_queue_check(self, team: str, now: datetime) -> None:
        due = next_queue_check(team, list(self.loads.values()), now)
        if due is not None:
            self._queue_check[team] = to_us(due)
            self._schedule(due, QUEUE_CHECK, team, to_us(due))

    # -- timers ----------------------------------------------------------------------------

    def _schedule(self, due: datetime, kind: str, key: Any, token: Any) -> None:
        self._sequence += 1
        heapq.heappush(self.due, (to_us(due), self._sequence, kind, key, token))

    def fire_next(self) -> tuple[str, datetime] | None:
        """Fire the earliest due timer; the lead its policy recycled and when, if it did."""
        due_us, _, kind, key, token = heapq.heappop(self.due)
        now = from_us(due_us)
        recycled = None
        if kind == QUEUE_CHECK:
            if self._queue_check.get(key) == token:
                del self._queue_check[key]
                self.drain(key, now)
            return None
        handoff = self.handoffs[key]
        if kind == ACCEPT_BREACH:
            if handoff.status == HandoffStatus.ASSIGNED and handoff.accept_by == token:
                self._accept_breach(key, now)
        elif kind in (MANAGER_WARNING, MANAGER_BREACH):
            if handoff.status == HandoffStatus.ESCALATED and handoff.queue_due_at == token:
                recycled = self._manager_queue(key, kind, now)
        elif kind in (STALE_REMINDER, STALE_RECYCLE):
            if self._stale_at.get((key, kind)) != due_us:
                return None  # moved by a tier raise, or restarted by feedback
            del self._stale_at[key, kind]
            if stale_deadlines(handoff, self.playbook) and last_feedback_at(handoff) == token:
                recycled = self._stale(key, kind, now)
        elif kind == REVISIT:
            self._revisit(key, now)
        return (recycled, now) if recycled is not None else None

    def _accept_breach(self, index: int, now: datetime) -> None:
        """Not accepted in time: reassign to a rep who never had the lead, or escalate."""
        handoff = self.handoffs[index]
        breaches = handoff.accept_breaches + 1
        self.events.append(ClockEvent(now, handoff.lead_key, "sla_breached", handoff.tier or ""))
        # The policy reads neither the breach count nor anything the rest changes: the
        # handoff is copied once, with everything the breach does to it.
        action = after_accept_breach(handoff, list(self.loads.values()), self.playbook, now)
        self._release(handoff)
        if isinstance(action, Escalate):
            team = self.teams[handoff.team]
            clock = manager_queue_deadlines(handoff.tier, now, self.playbook)
            handoff = self.handoffs[index] = changed(
                handoff,
                accept_breaches=breaches,
                rep_id=None,
                status=HandoffStatus.ESCALATED,
                queue=team.manager_queue or f"{team.name}-manager",
                reassignments=handoff.reassignments + 1,
                previous_reps=action.previous_reps,
                **({"queue_due_at": clock[1]} if clock is not None else {}),
            )
            if clock is not None:
                warn_at, due_at = clock
                self._schedule(warn_at, MANAGER_WARNING, index, due_at)
                self._schedule(due_at, MANAGER_BREACH, index, due_at)
            self.events.append(ClockEvent(now, handoff.lead_key, "escalated"))
        else:
            self._assign(
                index,
                action.decision,
                now,
                accept_breaches=breaches,
                reassignments=handoff.reassignments + 1,
                previous_reps=action.previous_reps,
            )
            self.events.append(ClockEvent(now, handoff.lead_key, "reassigned"))
        self.drain(handoff.team, now)

    def _manager_queue(self, index: int, kind: str, now: datetime) -> str | None:
        handoff = self.handoffs[index]
        if kind == MANAGER_WARNING:
            self.events.append(ClockEvent(now, handoff.lead_key, "manager_queue_warning"))
            return None
        self.events.append(ClockEvent(now, handoff.lead_key, "manager_queue_breached"))
        outcome = manager_queue_outcome(self.playbook)
        if not isinstance(outcome, Recycle):
            return None
        self._close(index, HandoffStatus.RECYCLED, now, outcome.reason, outcome.policy)
        return handoff.lead_key

    def _stale(self, index: int, kind: str, now: datetime) -> str | None:
        handoff = self.handoffs[index]
        if kind == STALE_REMINDER:
            self.events.append(ClockEvent(now, handoff.lead_key, "stale_reminder"))
            return None
        self._close(index, HandoffStatus.RECYCLED, now, self.playbook.sla.stale.reason, "recycle")
        self.drain(handoff.team, now)
        return handoff.lead_key

    def _revisit(self, index: int, now: datetime) -> None:
        """The revisit date came: route the lead again unless it has a newer handoff."""
        h = self.handoffs[index]
        if h.status != HandoffStatus.REJECTED or h.recycle_policy != "revisit":
            return
        if self.by_lead[h.lead_key][-1] != index:
            return  # it qualified again before the date and was routed then
        self.events.append(ClockEvent(now, h.lead_key, "revisited", h.reason or ""))
        lead = Routed(
            h.lead_key, h.email, dict(h.attributes or {}), h.tier or "", h.score, h.fit_score
        )
        self.route(lead, now, why=f"revisit after {h.reason}")

    def _close(
        self, index: int, status: HandoffStatus, now: datetime, reason: str | None, policy: str
    ) -> None:
        """Close a handoff by feedback or a policy; recycled leads are counted by reason."""
        handoff = self.handoffs[index]
        self._release(handoff)
        self.handoffs[index] = changed(
            handoff, status=status, closed_at=now, reason=reason, recycle_policy=policy
        )
        self.events.append(ClockEvent(now, handoff.lead_key, "recycled", f"{reason}/{policy}"))

    def _start_stale_clock(self, index: int) -> None:
        handoff = self.handoffs[index]
        clock = stale_deadlines(handoff, self.playbook)
        if clock is not None:
            self._stale_timer(index, STALE_REMINDER, clock[0])
            self._stale_timer(index, STALE_RECYCLE, clock[1])

    def _stale_timer(self, index: int, kind: str, due: datetime) -> None:
        """Set the handoff's stale timer of this kind (one at a time, as live's timers)."""
        self._stale_at[index, kind] = to_us(due)
        self._schedule(due, kind, index, last_feedback_at(self.handoffs[index]))

    # -- what the lead and sales do ---------------------------------------------------------

    def raise_tier(self, lead_key: str, tier: str, score: int, now: datetime) -> None:
        """A lead's tier changed: its newest open handoff takes a higher tier's tighter clock."""
        index = self._newest(lead_key, RAISABLE_STATUSES)
        if index is None:
            return
        handoff = self.handoffs[index]
        hours = None
        if self.playbook.sla.working_hours_only and handoff.rep_id:
            hours = self.loads[handoff.rep_id].working_hours
        raised = raise_tier(handoff, tier, score, self.playbook, now, hours)
        if raised is None:
            return
        updated = self.handoffs[index] = changed(
            handoff,
            tier=raised.tier,
            score=raised.score,
            warn_at=raised.warn_at,
            accept_by=raised.accept_by,
            contact_by=raised.contact_by,
        )
        if handoff.status == HandoffStatus.ASSIGNED and raised.accept_by != handoff.accept_by:
            assert raised.accept_by is not None
            self._schedule(raised.accept_by, ACCEPT_BREACH, index, raised.accept_by)
        stale = raised_stale_deadlines(handoff, updated, self.playbook)
        if stale is not None:  # tightened (or started); a reminder already sent is not resent
            if (
                stale_deadlines(handoff, self.playbook) is None
                or (index, STALE_REMINDER) in self._stale_at
            ):
                self._stale_timer(index, STALE_REMINDER, stale[0])
            self._stale_timer(index, STALE_RECYCLE, stale[1])
        detail = f"{raised.previous_tier}->{raised.tier}"
        self.events.append(ClockEvent(now, lead_key, "tier_raised", detail))

    def feedback(
        self,
        lead_keys: tuple[str, ...],
        action: FeedbackAction,
        now: datetime,
        reason: str | None = None,
        converted_to: Any = None,
    ) -> None:
        """Sales' recorded feedback on the lead's newest handoff the move applies to."""
        allowed, target = FEEDBACK_MOVES[action]
        index = next(
            (i for key in lead_keys if (i := self._newest(key, allowed)) is not None), None
        )
        if index is None:
            return  # the simulated handoff is elsewhere (closed, escalated, never made)
        handoff = self.handoffs[index]
        if action in (FeedbackAction.ACCEPT, FeedbackAction.CONTACT):
            late = accept_sla_outcome(handoff, now) == "breached"
            handoff = changed(
                handoff,
                status=target,
                accepted_at=handoff.accepted_at or now,
                accept_breaches=handoff.accept_breaches + late,
                contacted_at=now if action == FeedbackAction.CONTACT else handoff.contacted_at,
            )
            self.handoffs[index] = handoff
            self._start_stale_clock(index)
            return
        if action == FeedbackAction.REJECT:
            rejected = reject_outcome(reason or "", self.playbook, now)
            self._close(index, HandoffStatus.REJECTED, now, rejected.reason, rejected.policy)
            self.handoffs[index] = changed(
                self.handoffs[index],
                revisit_at=rejected.revisit_at,
                suppressed_until=rejected.suppressed_until,
            )
            if rejected.revisit_at is not None:
                self._schedule(rejected.revisit_at, REVISIT, index, None)
            if rejected.policy in {"suppress", "disqualify"}:
                self.suppressions[handoff.lead_key] = Suppression(
                    rejected.policy, rejected.suppressed_until, handoff.fit_score
                )
        else:
            self._release(handoff)
            self.handoffs[index] = changed(
                handoff,
                status=target,
                closed_at=handoff.closed_at or now,
                converted_to=converted_to,
            )
        if handoff.status in OPEN_STATUSES:
            self.drain(handoff.team, now)

    def _newest(self, lead_key: str, statuses: frozenset[HandoffStatus]) -> int | None:
        for index in reversed(self.by_lead.get(lead_key, [])):
            if self.handoffs[index].status in statuses:
                return index
        return None

    def finished(self) -> list[SimulatedHandoff]:
        """Each handoff's routing record with where the handoff stands now."""
        return [
            changed(
                first,
                status=str(h.status),
                reason=h.reason,
                recycle_policy=h.recycle_policy,
                closed_at=h.closed_at,
                raised_to=h.tier if h.tier != first.tier else None,
            )
            for first, h in zip(self.routed, self.handoffs, strict=True)
        ]
