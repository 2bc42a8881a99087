"""Pure backtest: run a playbook over recorded history at event time through the live cores.

The same functions live processing uses (identity resolution, `apply_activity`,
`apply_sales_outcome`, `merge`, `route_lead`, and the handoff core's clocks and policies in
`clocks.py`) run over the events in event-time order, so the current playbook reproduces the
stages and handoffs live processing reached. Sales' own feedback (accept, contact, reject,
convert) is a fact of the history and is replayed as it happened; what the playbook decides
(who qualifies, when, for which team and rep; what a rise in tier, a breach, a stale handoff
or a reject reason does) is recomputed. No I/O and no clock: the clocks run on event time and
fire up to the last event of the history.

Modelled rather than recorded, and the report says so: reps are taken as always available
inside their working hours (out-of-office periods are not in the event history), and the
live clocks ran on processing time, which is event time only for history that arrived live.
"""

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.backtest.clocks import ClockEvent, Desk, Routed, SimulatedHandoff
from services.handoff.policies import reject_outcome
from services.scoring.core import (
    LeadState,
    Transition,
    apply_activity,
    apply_activity_at,
    apply_sales_outcome,
    to_us,
)
from services.scoring.identity import LeadsInMemory, identity_aliases
from shared.events import (
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    CloudEvent,
    HandoffData,
    LeadActivityData,
)
from shared.playbook import Playbook
from shared.vocabulary import ConversionStage, FeedbackAction, LifecycleTransition

__all__ = ["ClockEvent", "SimulatedHandoff", "decode", "simulate", "judgements"]


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
    # What the clocks and the after-handoff policies did (tier raises, breaches, recycles ...).
    clock_events: list[ClockEvent] = field(default_factory=list)

    def since(self, start: datetime | None) -> "Outcome":
        """The outcome with only what happened at or after `start`."""
        if start is None:
            return self
        return replace(
            self,
            mqls=[m for m in self.mqls if m.at >= start],
            handoffs=[h for h in self.handoffs if h.at >= start],
            clock_events=[e for e in self.clock_events if e.at >= start],
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
        elif event.handoff_kind == "rejected":
            # Sales' verdict; a `recycled` is its consequence or a policy's (unworked, stale).
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


def simulate(history: list[HistoryEvent], playbook: Playbook) -> Outcome:
    """Score and route the history under `playbook`, and run its clocks, at event time."""
    # The run makes small objects by the million and no reference cycles, and every cyclic
    # collection would walk the whole decoded history again: a third of the run's time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _simulate(history, playbook)
    finally:
        if collecting:
            gc.enable()


# Sales' recorded feedback by handoff event kind. `recycled` is not among them: whether a
# rejection recycles the lead is the playbook's reject policy, and the manager queue's and the
# stale policy's recycles are the simulated clocks' to decide.
FEEDBACK_OF = {
    "accepted": FeedbackAction.ACCEPT,
    "contacted": FeedbackAction.CONTACT,
    "rejected": FeedbackAction.REJECT,
    "converted": FeedbackAction.CONVERT,
}


def _simulate(history: list[HistoryEvent], playbook: Playbook) -> Outcome:
    leads = _Leads()
    outcome = Outcome(events=len(history))
    desk = Desk(playbook)
    states, bound_to, due = leads.states, leads.bindings.get, desk.due
    for event in history:
        # The durable timers due by now fire first, in due order (heapq keeps `due` in place).
        while due and due[0][0] <= event.at_us:
            recycled = desk.fire_next()
            if recycled is not None:
                _sales_outcome(recycled[0], "recycled", None, recycled[1], leads, desk, outcome)
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
            if transitions:
                _follow(state, transitions, leads, desk, outcome)
            continue
        h = event.handoff
        action = FEEDBACK_OF.get(event.handoff_kind or "")
        if h is None or action is None:
            continue
        keys = (h.lead_key, bound_to(h.lead_key, h.lead_key))
        desk.feedback(keys, action, event.at, h.reason, h.converted_to)
        if action == FeedbackAction.CONVERT:
            _sales_outcome(h.lead_key, "converted", h.converted_to, event.at, leads, desk, outcome)
        elif action == FeedbackAction.REJECT:
            if reject_outcome(h.reason or "", playbook, event.at).recycle:
                _sales_outcome(h.lead_key, "recycled", None, event.at, leads, desk, outcome)
    outcome.stages = {k: s.stage for k, s in leads.states.items()}
    outcome.scores = {k: s.score.total for k, s in leads.states.items()}
    outcome.aliases = dict(leads.bindings)
    outcome.handoffs = desk.finished()
    outcome.clock_events = desk.events
    return outcome


def _sales_outcome(
    lead_key: str,
    kind: str,
    converted_to: ConversionStage | None,
    at: datetime,
    leads: _Leads,
    desk: Desk,
    outcome: Outcome,
) -> None:
    """A lead recycled (by sales' rejection or a policy) or converted, as scoring applies it."""
    names = (lead_key,)
    state, absorbed = leads.resolve(names, desk.playbook)
    state, transitions = apply_sales_outcome(state, kind, converted_to, at, desk.playbook)
    leads.keep_touched(state, names, absorbed, at)
    if transitions:
        _follow(state, transitions, leads, desk, outcome)


def _follow(
    state: LeadState,
    transitions: list[Transition],
    leads: _Leads,
    desk: Desk,
    outcome: Outcome,
) -> None:
    """What the handoff service does with a lead's transitions: route a new MQL, tighten the
    clock of an open handoff whose lead rose in tier."""
    for transition in transitions:
        if transition.name == LifecycleTransition.BECAME_MQL:
            tier = state.tier or desk.playbook.taxonomy.tier_for(state.score.total)
            mql = Qualification(
                state.lead_key,
                transition.at,
                state.score.total,
                tier,
                leads.first_touch.get(state.lead_key, transition.at),
                state.score.contributions,
            )
            outcome.mqls.append(mql)
            lead = Routed(
                state.lead_key,
                state.email,
                state.attributes,
                tier,
                state.score.total,
                state.score.fit,
            )
            desk.route(lead, transition.at)
        elif transition.name == LifecycleTransition.TIER_CHANGED and state.tier:
            desk.raise_tier(state.lead_key, state.tier, state.score.total, transition.at)
