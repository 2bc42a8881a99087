"""Pure backtest: run a playbook over recorded history at event time through the live cores.

The same functions live processing uses (identity resolution, `apply_activity`,
`apply_sales_outcome`, `merge`, `route_lead`) run over the events in event-time order, so
the current playbook reproduces the stages live processing reached. Sales' own actions
(recycles, conversions, and when they closed a handoff) are facts of the history and are
replayed as they happened; what the playbook decides (who qualifies, when, for which team
and rep) is recomputed. No I/O and no clock.

Two things are modelled rather than recorded, and the report says so: a simulated handoff
stays open until sales closed that lead's real handoff (rejected, converted, recycled), or
else for its tier's contact SLA; and reps are taken as always available inside their
working hours (out-of-office periods are not in the event history).
"""

import gc
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.handoff.policies import RecentHandoff, email_domain, existing_owner
from services.handoff.routing import RepLoad, RoutingDecision, route_lead
from services.scoring.core import (
    LeadState,
    apply_activity,
    apply_activity_at,
    apply_sales_outcome,
    to_us,
)
from services.scoring.identity import LeadsInMemory, identity_aliases
from shared.events import (
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    SALES_OUTCOMES,
    CloudEvent,
    HandoffData,
    LeadActivityData,
)
from shared.playbook import Playbook
from shared.vocabulary import LifecycleTransition

CLOSING = {"rejected", "recycled", "converted"}


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One decoded event of the history: a lead activity or a handoff event.

    `names` are the names it knows the lead by (the first keys a new lead), worked out once
    at decoding for every playbook the history is run through.
    """

    at: datetime
    id: str
    subject: str
    activity: LeadActivityData | None = None
    handoff_kind: str | None = None  # assigned, accepted, rejected, converted, ...
    handoff: HandoffData | None = None
    names: tuple[str, ...] = ()
    # `at` in microseconds since the epoch, worked out once: the simulation compares times
    # for every event, and comparing datetimes with different tzinfo objects costs 10x more.
    at_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at_us", to_us(self.at))


def decode(events: Iterable[CloudEvent]) -> list[HistoryEvent]:
    """Lead activities and handoff events in event-time order (ties by id), each id once.

    Platforms retry and relays re-publish, so a topic may hold an event more than once;
    the consumers count it once by id, and so does the backtest.
    """
    out = []
    seen: set[str] = set()
    for event in events:
        if event.id in seen:
            continue
        seen.add(event.id)
        if event.type == LEAD_ACTIVITY:
            data = LeadActivityData.model_validate(event.data)
            names = tuple(identity_aliases(event.subject, data))
            out.append(
                HistoryEvent(data.activity.occurred_at, event.id, event.subject, data, names=names)
            )
        elif event.type.startswith(HANDOFF_PREFIX):
            kind = event.type.removeprefix(HANDOFF_PREFIX)
            handoff = HandoffData.model_validate(event.data)
            out.append(
                HistoryEvent(
                    event.time, event.id, event.subject, None, kind, handoff, (handoff.lead_key,)
                )
            )
    out.sort(key=lambda e: (e.at, e.id))
    return out


@dataclass(frozen=True)
class Qualification:
    """A lead became an MQL: when, at which score and tier, and why."""

    lead_key: str
    at: datetime
    score: int
    tier: str
    first_touch_at: datetime
    explanation: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class SimulatedHandoff:
    """Where a qualified lead would have gone (rep None: it waited in the team's queue)."""

    lead_key: str
    at: datetime
    team: str
    rep_id: str | None
    tier: str
    assigned_at: datetime | None
    rule: str = ""  # the routing rule (or "account owner", "existing owner")


@dataclass(frozen=True)
class Judgement:
    """What sales did with a lead that was really handed off."""

    lead_key: str
    handed_off_at: datetime
    score: int
    accepted: bool
    rejected_reason: str | None
    converted_to: str | None


@dataclass
class Outcome:
    """What one playbook makes of the history."""

    events: int = 0
    stages: dict[str, str] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)
    mqls: list[Qualification] = field(default_factory=list)
    handoffs: list[SimulatedHandoff] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)

    def since(self, start: datetime | None) -> "Outcome":
        """The outcome with only the qualifications and handoffs at or after `start`."""
        if start is None:
            return self
        return replace(
            self,
            mqls=[m for m in self.mqls if m.at >= start],
            handoffs=[h for h in self.handoffs if h.at >= start],
        )

    def lead_of(self, name: str) -> str:
        """The lead key a name (key or alias) ended up under."""
        return self.aliases.get(name, name)


def judgements(history: list[HistoryEvent]) -> dict[str, Judgement]:
    """Sales' verdicts from the recorded handoff events, by the handoff's lead key."""
    first: dict[str, HistoryEvent] = {}
    accepted: set[str] = set()
    rejected: dict[str, str | None] = {}
    converted: dict[str, str | None] = {}
    for event in history:
        h = event.handoff
        if h is None:
            continue
        if event.handoff_kind == "assigned":
            first.setdefault(h.lead_key, event)
        elif event.handoff_kind in ("accepted", "contacted"):
            accepted.add(h.lead_key)
        elif event.handoff_kind in ("rejected", "recycled"):
            rejected.setdefault(h.lead_key, h.reason)
        elif event.handoff_kind == "converted":
            accepted.add(h.lead_key)
            converted[h.lead_key] = h.converted_to
    return {
        key: Judgement(
            key,
            event.at,
            event.handoff.score if event.handoff else 0,
            key in accepted,
            rejected.get(key),
            converted.get(key),
        )
        for key, event in first.items()
    }


class _Leads(LeadsInMemory):
    """The leads in memory (as the replay folds them), with when each person first came."""

    def __init__(self) -> None:
        super().__init__()
        self.first_touch: dict[str, datetime] = {}

    def keep_touched(
        self, state: LeadState, names: tuple[str, ...], absorbed: set[str], at: datetime
    ) -> None:
        """Keep the lead (`LeadsInMemory.keep`); a merged lead's first touch is its leads'
        earliest, a new lead's is `at`."""
        touches = [self.first_touch.pop(k) for k in absorbed if k in self.first_touch]
        if touches:
            self.first_touch[state.lead_key] = min(touches)
        elif state.lead_key not in self.first_touch:
            self.first_touch[state.lead_key] = at
        self.keep(state, names, absorbed)


@dataclass
class _Reps:
    """Reps as the routing core sees them, with the handoffs each holds open until when."""

    loads: dict[str, RepLoad]
    closes: list[tuple[int, str]] = field(default_factory=list)  # heap of (when in µs, rep)
    # team -> leads waiting in its queue, oldest first: (qualification, lead, handoff index)
    queued: dict[str, list[tuple[Qualification, LeadState, int]]] = field(default_factory=dict)
    # The existing-owner policy's memory: handoffs with a rep, by lead and by email domain.
    by_lead: dict[str, list[RecentHandoff]] = field(default_factory=dict)
    by_domain: dict[str, list[RecentHandoff]] = field(default_factory=dict)

    def release_until(self, now_us: int) -> list[str]:
        """Close the handoffs due by `now_us`; the teams that got a free slot."""
        freed = []
        while self.closes and self.closes[0][0] <= now_us:
            _, rep_id = heapq.heappop(self.closes)
            rep = self.loads[rep_id]
            self.loads[rep_id] = replace(rep, open_handoffs=max(rep.open_handoffs - 1, 0))
            freed.append(rep.team)
        return freed


def _roster(playbook: Playbook) -> _Reps:
    loads = {
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
    return _Reps(loads)


def simulate(history: list[HistoryEvent], playbook: Playbook) -> Outcome:
    """Score and route the history under `playbook`, at event time."""
    # The run makes small objects by the million and no reference cycles, and every cyclic
    # collection would walk the whole decoded history again: a third of the run's time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _simulate(history, playbook)
    finally:
        if collecting:
            gc.enable()


def _simulate(history: list[HistoryEvent], playbook: Playbook) -> Outcome:
    leads = _Leads()
    outcome = Outcome(events=len(history))
    closed_at = _closing_times(history)
    reps = _roster(playbook)
    states, bound_to, closes = leads.states, leads.bindings.get, reps.closes
    for event in history:
        if closes and closes[0][0] <= event.at_us:
            for team in reps.release_until(event.at_us):
                _drain(team, reps, playbook, outcome, closed_at, event.at)
        activity = event.activity
        if activity is not None:
            names = event.names
            # The usual case, inline: every name is already the lead's own (its key first).
            key = bound_to(names[0])
            for name in names:
                if bound_to(name) != key:
                    key = None
                    break
            if key is not None:
                state = states[key]
            else:
                state, absorbed = leads.resolve(names, playbook)
            if event.at is activity.activity.occurred_at:
                state, transitions = apply_activity_at(
                    state, activity, event.id, playbook, event.at, event.at_us
                )
            else:
                state, transitions = apply_activity(state, activity, event.id, playbook)
            if key is not None:
                states[key] = state
            else:
                leads.keep_touched(state, names, absorbed, event.at)
        elif event.handoff is not None and HANDOFF_PREFIX + (event.handoff_kind or "") in (
            SALES_OUTCOMES
        ):
            h = event.handoff
            names = event.names
            state, absorbed = leads.resolve(names, playbook)
            kind = SALES_OUTCOMES[HANDOFF_PREFIX + (event.handoff_kind or "")]
            state, transitions = apply_sales_outcome(
                state, kind, h.converted_to, event.at, playbook
            )
            leads.keep_touched(state, names, absorbed, event.at)
        else:
            continue
        for transition in transitions:
            if transition.name != LifecycleTransition.BECAME_MQL:
                continue
            mql = Qualification(
                state.lead_key,
                transition.at,
                state.score.total,
                state.tier or playbook.taxonomy.tier_for(state.score.total),
                leads.first_touch.get(state.lead_key, transition.at),
                state.score.contributions,
            )
            outcome.mqls.append(mql)
            _route(mql, state, reps, playbook, outcome, closed_at)
    outcome.stages = {k: s.stage for k, s in leads.states.items()}
    outcome.scores = {k: s.score.total for k, s in leads.states.items()}
    outcome.aliases = dict(leads.bindings)
    return outcome


def _closing_times(history: list[HistoryEvent]) -> dict[str, datetime]:
    """When sales closed each lead's real handoff (first reject, recycle or conversion)."""
    closed: dict[str, datetime] = {}
    for event in history:
        if event.handoff is not None and event.handoff_kind in CLOSING:
            closed.setdefault(event.handoff.lead_key, event.at)
    return closed


def _route(
    mql: Qualification,
    state: LeadState,
    reps: _Reps,
    playbook: Playbook,
    outcome: Outcome,
    closed_at: dict[str, datetime],
) -> None:
    decision = _decide(mql, state, reps, playbook, mql.at)
    if decision.rep_id is None:
        reps.queued.setdefault(decision.team, []).append((mql, state, len(outcome.handoffs)))
        outcome.handoffs.append(
            SimulatedHandoff(
                mql.lead_key, mql.at, decision.team, None, mql.tier, None, decision.rule
            )
        )
        return
    _assign(decision.rep_id, mql, state, reps, playbook, closed_at, mql.at)
    outcome.handoffs.append(
        SimulatedHandoff(
            mql.lead_key, mql.at, decision.team, decision.rep_id, mql.tier, mql.at, decision.rule
        )
    )


def _decide(
    mql: Qualification, state: LeadState, reps: _Reps, playbook: Playbook, now: datetime
) -> RoutingDecision:
    """The routing core's decision for a qualified lead, with the reps as they are `now`."""
    previous = None
    if playbook.routing.existing_owner.days is not None:
        domain = email_domain(state.email)
        recent = reps.by_lead.get(state.lead_key, []) + reps.by_domain.get(domain or "", [])
        owner = existing_owner(state.lead_key, domain, recent, playbook, now)
        previous = (owner.rep_id, owner.why) if owner else None
    return route_lead(
        state.lead_key,
        state.email,
        state.attributes,
        mql.tier,
        list(reps.loads.values()),
        playbook,
        now,
        previous=previous,
    )


def _assign(
    rep_id: str,
    mql: Qualification,
    state: LeadState,
    reps: _Reps,
    playbook: Playbook,
    closed_at: dict[str, datetime],
    now: datetime,
) -> None:
    rep = reps.loads[rep_id]
    reps.loads[rep_id] = replace(
        rep, assigned_total=rep.assigned_total + 1, open_handoffs=rep.open_handoffs + 1
    )
    policy = playbook.sla.tiers.get(mql.tier)
    held = timedelta(minutes=policy.contact_minutes if policy else 24 * 60)
    closes = closed_at.get(mql.lead_key)
    until = closes if closes and closes > now else now + held
    heapq.heappush(reps.closes, (to_us(until), rep_id))
    if playbook.routing.existing_owner.days is not None:
        domain = email_domain(state.email)
        had = RecentHandoff(mql.lead_key, domain, rep_id, now, until)
        reps.by_lead.setdefault(mql.lead_key, []).append(had)
        if domain:
            reps.by_domain.setdefault(domain, []).append(had)


def _drain(
    team: str,
    reps: _Reps,
    playbook: Playbook,
    outcome: Outcome,
    closed_at: dict[str, datetime],
    now: datetime,
) -> None:
    """A slot freed in `team`: hand the oldest queued leads to reps who can take them."""
    waiting = reps.queued.get(team, [])
    while waiting:
        mql, state, index = waiting[0]
        decision = _decide(mql, state, reps, playbook, now)
        if decision.rep_id is None:
            return
        waiting.pop(0)
        _assign(decision.rep_id, mql, state, reps, playbook, closed_at, now)
        outcome.handoffs[index] = replace(
            outcome.handoffs[index], rep_id=decision.rep_id, assigned_at=now, rule=decision.rule
        )
