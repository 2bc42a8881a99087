"""Lifecycle stages: what an activity, a sales outcome or time passing does to a lead.

No I/O and no clock: every function takes the time it judges at. An activity is judged at the
lead's own event-time clock (its newest activity's time, an activity dated further ahead of
its arrival than CLOCK_SKEW_TOLERANCE counting as of its arrival), never at the time a decay
timer happened to fire, so the stage a lead reaches depends on its activities and sales
outcomes, not on when they were processed.
"""

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.scoring.core.compiled import (
    COMPILED_BY_PLAYBOOK,
    CompiledRules,
    compiled_rules,
    fit_score,
)
from services.scoring.core.records import (
    Hit,
    Transition,
    from_us,
    to_us,
)
from services.scoring.core.score import LeadState, Score, evaluate, score_at
from services.scoring.core.tallies import counted, score_before, tallied_score
from shared.events import LeadActivityData
from shared.playbook import Playbook
from shared.playbook.qualification import qualifies
from shared.vocabulary import BECAME, ConversionStage, Stage
from shared.vocabulary import LifecycleTransition as T

# The stages an activity can make an MQL from.
QUALIFIABLE = frozenset({Stage.SUBSCRIBER, Stage.LEAD, Stage.RECYCLED})
# The stages at which a sales signal reaches sales: the lead is theirs (mql) or in their hands.
SIGNALLING = frozenset({Stage.MQL, Stage.SQL, Stage.OPPORTUNITY})

# An activity dated further ahead of the moment ingest accepted it is taken as of that moment
# plus this, so one bad clock cannot push the lead's event-time clock years ahead.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


def effective_time(occurred_at: datetime, received_at: datetime | None) -> datetime:
    """When an activity counts as having happened: never far ahead of when it arrived."""
    if received_at is not None and occurred_at > received_at + CLOCK_SKEW_TOLERANCE:
        return received_at + CLOCK_SKEW_TOLERANCE
    return occurred_at


def activity_hits(
    data: LeadActivityData, event_id: str, playbook: Playbook, at: datetime
) -> tuple[Hit, ...]:
    """The raw awards an activity earns from each behaviour rule it matches."""
    activity = data.activity
    rules = compiled_rules(playbook).by_activity.get(activity.type, ())
    return tuple(
        Hit(rule.name, rule.points, at, event_id)
        for rule in rules
        if rule.matches(activity.properties)
    )


def earns_points(data: LeadActivityData, playbook: Playbook) -> bool:
    """Whether an activity matches any behaviour rule (`activity_hits` would give one)."""
    activity = data.activity
    properties = activity.properties
    return any(
        not rule.conditions or rule.matches(properties)
        for rule in compiled_rules(playbook).by_activity.get(activity.type, ())
    )


def apply_activity(
    state: LeadState,
    data: LeadActivityData,
    event_id: str,
    playbook: Playbook,
    received_at: datetime | None = None,
) -> tuple[LeadState, list[Transition]]:
    """The lead after one activity, and the lifecycle transitions it caused.

    `received_at` is when ingest accepted the event (the Kafka record's time): an activity
    dated further ahead of it than CLOCK_SKEW_TOLERANCE counts as of received_at plus that.
    """
    occurred_at = data.activity.occurred_at
    if received_at is not None:
        occurred_at = effective_time(occurred_at, received_at)
    return apply_activity_at(state, data, event_id, playbook, occurred_at, to_us(occurred_at))


def apply_activity_at(
    state: LeadState,
    data: LeadActivityData,
    event_id: str,
    playbook: Playbook,
    occurred_at: datetime,
    occurred_us: int,
) -> tuple[LeadState, list[Transition]]:
    """`apply_activity` with the time the activity counts at, also in microseconds.

    A backtest works each event's microseconds out once for every playbook it runs.
    """
    entry = COMPILED_BY_PLAYBOOK.get(id(playbook))  # _compiled, written out
    compiled = entry[1] if entry is not None and entry[0] is playbook else compiled_rules(playbook)
    activity = data.activity
    last = state.last_activity_at
    at, at_us = occurred_at, occurred_us
    if last is not None:
        # The previous activity's score knows its time in microseconds: no datetime arithmetic.
        last_us = state.score.us_of(last)
        if occurred_us <= last_us:
            # The lead's event-time clock: a late activity is judged with everything it did.
            at, at_us = last, last_us
    properties = activity.properties
    awards = [
        (rule.name, rule.cap, (occurred_us, event_id, rule.points))
        for rule in compiled.by_activity.get(activity.type, ())
        if not rule.conditions or rule.matches(properties)
    ]
    behaviour = state.behaviour
    origins = behaviour.origins or frozenset({state.lead_key})
    behaviour = counted(behaviour, awards, compiled, at_us, origins)
    email = data.identity.email or state.email
    attributes = _merged_attributes(state.attributes, data.attributes)
    score = score_at(compiled, email, attributes, behaviour, at_us, state.score, at)
    may_qualify = state.stage != Stage.RECYCLED or _may_requalify(
        compiled, state, occurred_at, at_us
    )
    stage, tier, transitions = _judged(compiled, state, state.stage, score, at, may_qualify)
    if state.events_count == 0:  # the funnel counts leads from this
        transitions.insert(0, Transition(T.BECAME_LEAD, state.stage, stage, at))
    if activity.type in compiled.signals and is_signal(state.stage, stage):
        transitions.append(Transition(T.SIGNAL, stage, stage, occurred_at, signal=activity.type))
    updated = LeadState(  # positional: keywords cost a fifth of the event here
        state.lead_key,
        email,
        attributes,
        behaviour,
        stage,
        tier,
        state.events_count + 1,
        at,  # last_activity_at
        at,  # evaluated_at
        score,
        state.recycled_at,
    )
    return updated, transitions


def is_signal(before: Stage, after: Stage) -> bool:
    """Whether a signal activity reaches sales: the lead was already an MQL (or later) when it
    came and it did not disqualify the lead (the activity that qualifies a lead is its MQL)."""
    return before in SIGNALLING and after != Stage.DISQUALIFIED


# Types whose equal values are the same value (floats only when not zero: 0.0 == -0.0).
_PLAIN = frozenset({str, int, bool, float})


def _merged_attributes(current: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The lead's attributes with the ones an event sent (the latest value wins).

    States never change their dicts, so when the event sends nothing new (the usual case:
    a tracker repeats what it knows) the lead keeps sharing its old dict, and its fit with it.
    """
    for name, value in sent.items():
        old = current.get(name, _MISSING)
        if old is not value and (
            type(old) is not type(value)
            or type(value) not in _PLAIN
            or old != value
            or value == 0.0
        ):
            return {**current, **sent}
    return current


_MISSING = object()


def _may_requalify(
    compiled: CompiledRules, state: LeadState, occurred_at: datetime, at_us: int
) -> bool:
    """Whether an activity at `at_us` (at or after the lead's clock) may make a recycled lead
    an MQL again.

    A recycled lead qualifies again only through activity after sales sent it back that
    lifts its total from below the threshold, so the next email open does not bounce a
    lead straight back to the rep who just rejected it. Its total before the activity takes
    the fit from its score (a recycled lead's every activity asks this).
    """
    if state.recycled_at is not None and occurred_at < state.recycled_at:
        return False
    before = score_at(compiled, state.email, state.attributes, state.behaviour, at_us, state.score)
    return before.total < compiled.threshold


def _judged(
    compiled: CompiledRules,
    before: LeadState,
    stage: Stage,
    score: Score,
    at: datetime,
    may_qualify: bool,
) -> tuple[Stage, str, list[Transition]]:
    """The stage and tier a new score gives, and the transitions from `before`."""
    tier = compiled.tier_of.get(score.total) or compiled.tier_for(score.total)
    threshold = compiled.threshold
    transitions = []
    if score.disqualified and stage != Stage.DISQUALIFIED:
        transitions.append(Transition(T.DISQUALIFIED, stage, Stage.DISQUALIFIED, at))
        stage = Stage.DISQUALIFIED
    elif (
        may_qualify
        and stage in QUALIFIABLE
        and qualifies(score.total, score.fit, score.behaviour, threshold, compiled.qualification)
    ):
        transitions.append(Transition(T.BECAME_MQL, stage, Stage.MQL, at))
        stage = Stage.MQL
    elif stage == Stage.MQL and before.score.total >= threshold > score.total:
        transitions.append(Transition(T.SCORE_BELOW_THRESHOLD, stage, stage, at))
    if before.tier is not None and tier != before.tier and stage != Stage.DISQUALIFIED:
        transitions.append(Transition(T.TIER_CHANGED, stage, stage, at, previous_tier=before.tier))
    return stage, tier, transitions


def rescore(
    before: LeadState, after: LeadState, playbook: Playbook, at: datetime, *, may_qualify: bool
) -> tuple[LeadState, list[Transition]]:
    """Score `after` at `at` and name the transitions from `before`.

    Only activities qualify a lead (`may_qualify`); time alone can only cool it down.
    """
    score = evaluate(after, playbook, at)
    stage, tier, transitions = _judged(
        compiled_rules(playbook), before, after.stage, score, at, may_qualify
    )
    return replace(after, score=score, tier=tier, stage=stage, evaluated_at=at), transitions


def retier(
    state: LeadState, playbook: Playbook, now: datetime
) -> tuple[LeadState, list[Transition]]:
    """Re-score a lead as time passes (a decay timer fired)."""
    at = max(now, state.evaluated_at) if state.evaluated_at else now
    return rescore(state, state, playbook, at, may_qualify=False)


def apply_sales_outcome(
    state: LeadState,
    outcome: str,
    converted_to: ConversionStage | None,
    at: datetime,
    playbook: Playbook,
) -> tuple[LeadState, list[Transition]]:
    """Sales sent the lead back (recycled) or converted it (sql, opportunity, customer).

    A recycle that arrives after activity that happened later than it (the two topics are
    read side by side) still lets that activity requalify the lead, exactly as if they had
    arrived in event-time order, so a replay reaches the same stage as live processing.
    """
    if outcome == "recycled" and state.stage not in (Stage.RECYCLED, Stage.DISQUALIFIED):
        recycled = replace(state, stage=Stage.RECYCLED, recycled_at=at)
        transitions = [Transition(T.RECYCLED, state.stage, Stage.RECYCLED, at)]
        requalified_at = _requalified_after(recycled, at, playbook)
        if requalified_at is not None:
            recycled = replace(recycled, stage=Stage.MQL)
            transitions.append(Transition(T.BECAME_MQL, Stage.RECYCLED, Stage.MQL, requalified_at))
        return recycled, transitions
    if outcome == "converted" and converted_to in BECAME and state.stage != converted_to:
        assert converted_to is not None
        stage = Stage(converted_to)
        transition = Transition(BECAME[converted_to], state.stage, stage, at)
        return replace(state, stage=stage), [transition]
    return state, []


def _requalified_after(state: LeadState, since: datetime, playbook: Playbook) -> datetime | None:
    """The time of the first activity at or after `since` that lifted the total to the threshold.

    It looks at the lead's RECENT_HITS newest awards: a recycle read after more of the lead's
    later activity than that sees only the newest of it.
    """
    threshold = playbook.taxonomy.mql_threshold
    fit, _, _ = fit_score(state.email, state.attributes, playbook)
    behaviour = state.behaviour
    since_us = to_us(since)
    for order in sorted({(r[0], r[1]) for r in behaviour.recent if r[0] >= since_us}):
        at = from_us(order[0])
        before = round(fit + score_before(behaviour, playbook, at, order, with_it=False))
        after = round(fit + score_before(behaviour, playbook, at, order, with_it=True))
        if before < threshold <= after:
            return at
    return None


def next_score_change(state: LeadState, playbook: Playbook) -> datetime | None:
    """When decay alone will move the lead across its tier band or the MQL threshold, if ever.

    All behaviour points decay with one half-life, so B(t) = B0 * 2^(-(t - t0) / h) and the
    crossing time has a closed form. Totals are rounded, hence the half-point margins.
    """
    half_life_days = playbook.scoring.decay.half_life_days
    if not half_life_days or state.evaluated_at is None or state.tier is None:
        return None
    # Unrounded values: a rounding error of 0.005 points moves the crossing by minutes. Those
    # of the activity's score when it was worked out for this state (the same sums).
    points = state.score.worked_out(compiled_rules(playbook), state)
    if points is not None:
        fit, behaviour = points
    else:
        fit, _, _ = fit_score(state.email, state.attributes, playbook)
        behaviour, _ = tallied_score(state.behaviour, playbook, state.evaluated_at)
    low, high = playbook.taxonomy.band(state.tier)
    lines = [low - 0.5, high - 0.5]
    if state.stage == Stage.MQL:
        lines.append(playbook.taxonomy.mql_threshold - 0.5)
    deltas = []
    for line in lines:
        gap = line - fit  # behaviour must reach this for the total to cross the line
        if math.isinf(gap) or behaviour == 0 or gap == 0 or (gap > 0) != (behaviour > 0):
            continue
        if abs(gap) >= abs(behaviour):
            continue  # behaviour only shrinks toward 0, so it never gets there
        deltas.append(half_life_days * math.log2(behaviour / gap))
    if not deltas:
        return None
    # A second past the crossing, so the re-score sees the new side of the line.
    return state.evaluated_at + timedelta(days=min(deltas), seconds=1)
