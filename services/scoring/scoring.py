"""Pure scoring: a lead's fit and decaying behaviour score, its tier and its lifecycle stage.

No I/O and no clock: every function takes the time it scores at. The score at a time t is a
function of the lead's attributes and activities alone, so live processing, a replay and a
decay timer all agree. Caps are applied in event-time order (ties by event id), so the order
in which activities arrive does not change what they earn. An activity is judged at the
lead's own event-time clock (its newest activity's time, an activity dated further ahead of
its arrival than CLOCK_SKEW_TOLERANCE counting as of its arrival), never at the time a
decay timer happened to fire, so the stage a lead reaches depends on its activities and
sales outcomes, not on when they were processed.

Scoring is incremental: each activity updates a per-rule tally (`Behaviour`) whose size does
not grow with the lead's history, so an event costs the same for a lead with ten earlier
activities as for one with ten thousand. `behaviour_score` over the raw awards is the
definition the tallies agree with (a property test checks it).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import jsoncodec
from shared.events import LeadActivityData
from shared.playbook import Playbook
from shared.playbook.scoring_rules import Cap

# An activity dated further ahead of the moment ingest accepted it is taken as of that moment
# plus this, so one bad clock cannot push the lead's event-time clock years ahead.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
# A closed cap period whose whole cap has decayed below this is folded into the rule's sum; a
# late activity for it could move the score by less than this (explanations show hundredths).
SETTLED_BELOW_POINTS = 0.005
# Newest awards kept one by one, for a recycle read after the activity that followed it.
RECENT_HITS = 48

# Funnel rank: a merge keeps the furthest stage; a recycled lead was seen by sales, so it
# outranks a fresh one.
STAGE_RANK = {
    "subscriber": 0,
    "lead": 1,
    "recycled": 2,
    "mql": 3,
    "sql": 4,
    "opportunity": 5,
    "customer": 6,
    "disqualified": 7,
}
QUALIFIABLE = {"subscriber", "lead", "recycled"}
STAGE_LEAD = "lead"
STAGE_MQL = "mql"
BECAME_LEAD = "became_lead"
BECAME_MQL = "became_mql"
TIER_CHANGED = "tier_changed"
BELOW_THRESHOLD = "score_below_threshold"
DISQUALIFIED = "disqualified"
RECYCLED = "recycled"
MERGED = "merged"
CONVERTED_STAGES = {"sql", "opportunity", "customer"}


@dataclass(frozen=True)
class Hit:
    """Raw behaviour points a rule gave for one activity (caps and decay apply on evaluation)."""

    rule: str
    points: int
    at: datetime
    event_id: str

    @property
    def order(self) -> tuple[datetime, str]:
        """Event-time order, ties by event id: the order caps are counted in."""
        return (self.at, self.event_id)


# One award kept one by one: (microseconds since the epoch, event id, points). Plain tuples
# sort in event-time order (ties by event id) and go to JSON and back without conversion.
Award = tuple[int, str, int]
# One of the newest awards: (microseconds since the epoch, event id, rule, points).
RecentAward = tuple[int, str, str, int]


@dataclass(frozen=True)
class RuleTally:
    """One behaviour rule's points so far, in a size that does not grow with activity.

    Every award decays with the same half-life, so a sum of decayed awards is one number
    carried forward to a reference time (`as_of_us`). `settled` sums the awards that can no
    longer change; `open` sums those of the cap periods still open, which a capped rule keeps
    award by award in event-time order (at most the cap's points of them), because a late
    activity can take its place in its period and push a later award out. A period whose
    whole cap is worth less than SETTLED_BELOW_POINTS moves from `open` into `settled`.
    """

    settled: float = 0.0
    open: float = 0.0
    as_of_us: int | None = None
    # (period, its awards packed as JSON text): only the period an activity lands in is
    # unpacked, so a long history of open periods costs no parsing per event.
    periods: tuple[tuple[int, str], ...] = ()
    settled_through: int | None = None  # cap periods up to this one are folded into `settled`


@dataclass(frozen=True)
class Behaviour:
    """A lead's behaviour record: a tally per rule, plus its newest awards for recycle checks.

    `recent` keeps the RECENT_HITS newest awards (event-time order): a recycle read after later
    activity looks at them to tell whether that activity requalified the lead. `origins` names
    every lead record folded into this one, so merging the same record twice changes nothing.
    """

    tallies: dict[str, RuleTally] = field(default_factory=dict)
    recent: tuple[RecentAward, ...] = ()
    origins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Score:
    """A lead's score at one moment, with what each rule contributed."""

    fit: float
    behaviour: float
    total: int
    contributions: tuple[tuple[str, float], ...]
    disqualified: bool = False


@dataclass(frozen=True)
class LeadState:
    """What scoring knows about one lead; `score` is as of `evaluated_at`."""

    lead_key: str
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)
    stage: str = STAGE_LEAD
    tier: str | None = None
    events_count: int = 0
    last_activity_at: datetime | None = None
    evaluated_at: datetime | None = None
    score: Score = Score(0.0, 0.0, 0, ())
    # When sales last sent the lead back: only activity after it can qualify the lead again.
    recycled_at: datetime | None = None

    def explanation(self) -> list[dict[str, Any]]:
        """The score's contributions, largest first."""
        return [{"rule": rule, "points": points} for rule, points in self.score.contributions]


@dataclass(frozen=True)
class Transition:
    """A lifecycle change, and when it happened."""

    name: str
    previous_stage: str
    stage: str
    at: datetime
    previous_tier: str | None = None


def fit_score(
    email: str | None, attributes: dict[str, Any], playbook: Playbook
) -> tuple[float, list[tuple[str, float]], bool]:
    """Points for who the lead is, what gave them, and whether a rule disqualifies the lead."""
    values = dict(attributes)
    if email and "@" in email:
        values["email_domain"] = email.rsplit("@", 1)[1]
    total, parts, disqualified = 0.0, [], False
    for rule in playbook.scoring.fit:
        if rule.matches(values.get(rule.attribute)):
            disqualified = disqualified or rule.disqualify
            if rule.points:
                total += rule.points
                parts.append((f"fit:{rule.name}", float(rule.points)))
    return total, parts, disqualified


def behaviour_score(
    hits: Iterable[Hit], playbook: Playbook, at: datetime
) -> tuple[float, list[tuple[str, float]]]:
    """Behaviour points at `at` from every raw award: the definition the tallies agree with.

    Capped per rule and period in event-time order, then decayed. Live scoring never calls
    this (its cost grows with history); the tests compare the tallies with it.
    """
    caps = _caps(playbook)
    half_life_days = playbook.scoring.decay.half_life_days
    used: dict[tuple[str, int], int] = {}
    per_rule: dict[str, float] = {}
    for hit in sorted(hits, key=lambda h: h.order):
        if hit.at > at:
            continue
        awarded = hit.points
        cap = caps.get(hit.rule)
        if cap and awarded > 0:
            bucket = (hit.rule, _period(hit.at, cap))
            awarded = min(awarded, cap.points - used.get(bucket, 0))
            used[bucket] = used.get(bucket, 0) + max(awarded, 0)
        if awarded <= 0 and hit.points > 0:
            continue
        per_rule[hit.rule] = per_rule.get(hit.rule, 0.0) + _decayed(
            awarded, hit.at, at, half_life_days
        )
    return sum(per_rule.values()), [(f"behaviour:{r}", v) for r, v in per_rule.items()]


def _caps(playbook: Playbook) -> dict[str, Cap]:
    return {r.rule_name: r.cap for r in playbook.scoring.behaviour if r.cap}


def _period(at: datetime, cap: Cap) -> int:
    """The cap period an award falls in: fixed windows of period_days from the epoch."""
    return math.floor(at.timestamp() / (cap.period_days * 86400))


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000


def to_us(at: datetime) -> int:
    """Microseconds since the epoch (exact)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The time `us` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def _decayed(points: float, since: datetime, at: datetime, half_life_days: float | None) -> float:
    """`points` earned at `since`, as worth at `at`."""
    if not half_life_days:
        return float(points)
    return points * 0.5 ** ((at - since).total_seconds() / 86400 / half_life_days)


def _factor(since_us: int, at_us: int, half_life_days: float | None) -> float:
    """What one point earned at `since_us` is worth at `at_us` (above 1 going back in time)."""
    if not half_life_days:
        return 1.0
    return 0.5 ** ((at_us - since_us) / DAY_US / half_life_days)


def pack(awards: Iterable[Award]) -> str:
    """A cap period's awards as compact JSON text."""
    return jsoncodec.dumps(list(awards))


def unpack(packed: str) -> tuple[Award, ...]:
    """A cap period's awards from their JSON text, in event-time order."""
    return tuple((at_us, event_id, points) for at_us, event_id, points in jsoncodec.loads(packed))


def _awards(awards: Iterable[Award], cap_points: int) -> list[tuple[Award, int]]:
    """What each award of one cap period earns, in event-time order; those earning 0 left out."""
    used, earned = 0, []
    for award in awards:
        awarded = min(award[2], cap_points - used)
        if awarded > 0:
            used += awarded
            earned.append((award, awarded))
    return earned


def _period_value(
    awards: Iterable[Award], cap: Cap | None, at_us: int, half_life_days: float | None
) -> float:
    """A cap period's points at `at_us` (awards after it left out)."""
    earned = _awards(awards, cap.points) if cap else [(a, a[2]) for a in awards]
    return sum(
        awarded * _factor(award[0], at_us, half_life_days)
        for award, awarded in earned
        if award[0] <= at_us
    )


def _rebased(tally: RuleTally, at_us: int, half_life_days: float | None) -> RuleTally:
    """The tally with its reference time moved forward to `at_us` (never back)."""
    if tally.as_of_us is None:
        return replace(tally, as_of_us=at_us)
    if at_us <= tally.as_of_us:
        return tally
    factor = _factor(tally.as_of_us, at_us, half_life_days)
    return replace(tally, settled=tally.settled * factor, open=tally.open * factor, as_of_us=at_us)


def _add_hit(
    tally: RuleTally, hit: Hit, cap: Cap | None, half_life_days: float | None
) -> RuleTally:
    at_us = to_us(hit.at)
    if cap is None or hit.points <= 0:  # uncapped (negative points are never capped)
        tally = _rebased(tally, at_us, half_life_days)
        assert tally.as_of_us is not None
        gained = hit.points * _factor(at_us, tally.as_of_us, half_life_days)
        return replace(tally, settled=tally.settled + gained)
    period = _period(hit.at, cap)
    if tally.settled_through is not None and period <= tally.settled_through:
        return tally  # its period is folded: whatever it would change is below the threshold
    tally = _rebased(tally, at_us, half_life_days)
    assert tally.as_of_us is not None
    periods = dict(tally.periods)
    before = unpack(periods.get(period, "[]"))
    after = tuple(
        a for a, _ in _awards(sorted((*before, (at_us, hit.event_id, hit.points))), cap.points)
    )
    periods[period] = pack(after)
    change = _period_value(after, cap, tally.as_of_us, half_life_days) - _period_value(
        before, cap, tally.as_of_us, half_life_days
    )
    return replace(tally, open=tally.open + change, periods=tuple(sorted(periods.items())))


def _fold_closed_periods(
    tally: RuleTally, cap: Cap | None, half_life_days: float | None, clock: datetime
) -> RuleTally:
    """Fold cap periods whose whole cap is worth less than SETTLED_BELOW_POINTS at `clock`."""
    if cap is None or not half_life_days or not tally.periods or tally.as_of_us is None:
        return tally
    period_us = cap.period_days * DAY_US
    clock_us = to_us(clock)
    for period, packed in tally.periods:
        end_us = int((period + 1) * period_us)
        if cap.points * _factor(end_us, clock_us, half_life_days) >= SETTLED_BELOW_POINTS:
            break  # periods are in order: the later ones are worth more
        value = _period_value(unpack(packed), cap, tally.as_of_us, half_life_days)
        tally = replace(
            tally,
            settled=tally.settled + value,
            open=tally.open - value,
            periods=tally.periods[1:],
            settled_through=period,
        )
    if not tally.periods:
        tally = replace(tally, open=0.0)  # no rounding residue from the folds
    return tally


def _tally_points(tally: RuleTally, at: datetime, half_life_days: float | None) -> float:
    """A rule's points at `at` (at or after the tally's reference time)."""
    if tally.as_of_us is None:
        return tally.settled + tally.open
    return (tally.settled + tally.open) * _factor(tally.as_of_us, to_us(at), half_life_days)


def add_hits(
    behaviour: Behaviour, hits: Iterable[Hit], playbook: Playbook, clock: datetime
) -> Behaviour:
    """The behaviour record with these awards counted, as of the lead's clock `clock`."""
    caps = _caps(playbook)
    half_life_days = playbook.scoring.decay.half_life_days
    tallies = dict(behaviour.tallies)
    new = list(hits)
    for hit in new:
        tally = tallies.get(hit.rule, RuleTally())
        tallies[hit.rule] = _add_hit(tally, hit, caps.get(hit.rule), half_life_days)
    for rule in {h.rule for h in new}:
        tallies[rule] = _fold_closed_periods(tallies[rule], caps.get(rule), half_life_days, clock)
    recent = behaviour.recent
    if new:
        fresh = [(to_us(h.at), h.event_id, h.rule, h.points) for h in new]
        recent = tuple(sorted(set(recent).union(fresh))[-RECENT_HITS:])
    return replace(behaviour, tallies=tallies, recent=recent)


def tallied_score(
    behaviour: Behaviour, playbook: Playbook, at: datetime
) -> tuple[float, list[tuple[str, float]]]:
    """Behaviour points at `at` from the tallies (at or after the lead's clock)."""
    half_life_days = playbook.scoring.decay.half_life_days
    per_rule = {
        rule: _tally_points(tally, at, half_life_days) for rule, tally in behaviour.tallies.items()
    }
    return sum(per_rule.values()), [(f"behaviour:{r}", v) for r, v in per_rule.items()]


def _score_before(
    behaviour: Behaviour,
    playbook: Playbook,
    at: datetime,
    upto: tuple[int, str],
    with_it: bool,
) -> float:
    """Behaviour at `at` counting only awards up to `upto` (event-time order, microseconds).

    The awards after `upto` are all in `recent` (it holds the newest ones), so taking them
    out of the tallies gives what the lead had then.
    """
    caps = _caps(playbook)
    half_life_days = playbook.scoring.decay.half_life_days
    at_us = to_us(at)
    later = [
        r for r in behaviour.recent if ((r[0], r[1]) > upto if with_it else (r[0], r[1]) >= upto)
    ]
    total = 0.0
    for rule, tally in behaviour.tallies.items():
        if tally.as_of_us is None:
            total += tally.settled
            continue
        cap = caps.get(rule)
        gone = [r for r in later if r[2] == rule]
        settled = tally.settled
        for at_gone, _, _, points in gone:
            if cap is None or points <= 0:
                settled -= points * _factor(at_gone, tally.as_of_us, half_life_days)
        total += settled * _factor(tally.as_of_us, at_us, half_life_days)
        gone_ids = {(r[0], r[1]) for r in gone}
        for _, packed in tally.periods:
            kept = [a for a in unpack(packed) if (a[0], a[1]) not in gone_ids]
            total += _period_value(kept, cap, at_us, half_life_days)
    return total


def evaluate(state: LeadState, playbook: Playbook, at: datetime) -> Score:
    """The lead's score at `at` (never earlier than the lead's own clock)."""
    if state.last_activity_at is not None and at < state.last_activity_at:
        at = state.last_activity_at
    fit, fit_parts, disqualified = fit_score(state.email, state.attributes, playbook)
    behaviour, behaviour_parts = tallied_score(state.behaviour, playbook, at)
    parts = sorted(
        ((r, round(p, 2)) for r, p in fit_parts + behaviour_parts), key=lambda rp: (-rp[1], rp[0])
    )
    return Score(
        round(fit, 2), round(behaviour, 2), round(fit + behaviour), tuple(parts), disqualified
    )


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
    return tuple(
        Hit(rule.rule_name, rule.points, at, event_id)
        for rule in playbook.scoring.behaviour
        if rule.matches(activity.type, activity.properties)
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
    occurred_at = effective_time(data.activity.occurred_at, received_at)
    new_hits = activity_hits(data, event_id, playbook, occurred_at)
    last = state.last_activity_at
    # The lead's event-time clock: a late activity is judged with everything it already did.
    at = max(last, occurred_at) if last else occurred_at
    behaviour = state.behaviour
    if not behaviour.origins:
        behaviour = replace(behaviour, origins=frozenset({state.lead_key}))
    updated = replace(
        state,
        email=data.identity.email or state.email,
        attributes={**state.attributes, **data.attributes},
        behaviour=add_hits(behaviour, new_hits, playbook, at),
        events_count=state.events_count + 1,
        last_activity_at=at,
    )
    qualifies = _may_requalify(state, occurred_at, at, playbook)
    updated, transitions = rescore(state, updated, playbook, at, may_qualify=qualifies)
    if state.events_count == 0:  # the funnel counts leads from this
        transitions.insert(0, Transition(BECAME_LEAD, state.stage, updated.stage, at))
    return updated, transitions


def _may_requalify(
    state: LeadState, occurred_at: datetime, at: datetime, playbook: Playbook
) -> bool:
    """Whether an activity may make the lead an MQL (again).

    A recycled lead qualifies again only through activity after sales sent it back that
    lifts its total from below the threshold, so the next email open does not bounce a
    lead straight back to the rep who just rejected it.
    """
    if state.stage != RECYCLED:
        return True
    if state.recycled_at is not None and occurred_at < state.recycled_at:
        return False
    return evaluate(state, playbook, at).total < playbook.taxonomy.mql_threshold


def rescore(
    before: LeadState, after: LeadState, playbook: Playbook, at: datetime, *, may_qualify: bool
) -> tuple[LeadState, list[Transition]]:
    """Score `after` at `at` and name the transitions from `before`.

    Only activities qualify a lead (`may_qualify`); time alone can only cool it down.
    """
    score = evaluate(after, playbook, at)
    tier = playbook.taxonomy.tier_for(score.total)
    threshold = playbook.taxonomy.mql_threshold
    stage = after.stage
    transitions = []
    if score.disqualified and stage != "disqualified":
        transitions.append(Transition(DISQUALIFIED, stage, "disqualified", at))
        stage = "disqualified"
    elif may_qualify and stage in QUALIFIABLE and score.total >= threshold:
        transitions.append(Transition(BECAME_MQL, stage, STAGE_MQL, at))
        stage = STAGE_MQL
    elif stage == STAGE_MQL and before.score.total >= threshold > score.total:
        transitions.append(Transition(BELOW_THRESHOLD, stage, stage, at))
    if before.tier is not None and tier != before.tier and stage != "disqualified":
        transitions.append(Transition(TIER_CHANGED, stage, stage, at, previous_tier=before.tier))
    return replace(after, score=score, tier=tier, stage=stage, evaluated_at=at), transitions


def retier(
    state: LeadState, playbook: Playbook, now: datetime
) -> tuple[LeadState, list[Transition]]:
    """Re-score a lead as time passes (a decay timer fired)."""
    at = max(now, state.evaluated_at) if state.evaluated_at else now
    return rescore(state, state, playbook, at, may_qualify=False)


def apply_sales_outcome(
    state: LeadState, outcome: str, converted_to: str | None, at: datetime, playbook: Playbook
) -> tuple[LeadState, list[Transition]]:
    """Sales sent the lead back (recycled) or converted it (sql, opportunity, customer).

    A recycle that arrives after activity that happened later than it (the two topics are
    read side by side) still lets that activity requalify the lead, exactly as if they had
    arrived in event-time order, so a replay reaches the same stage as live processing.
    """
    if outcome == "recycled" and state.stage not in (RECYCLED, "disqualified"):
        recycled = replace(state, stage=RECYCLED, recycled_at=at)
        transitions = [Transition(RECYCLED, state.stage, RECYCLED, at)]
        requalified_at = _requalified_after(recycled, at, playbook)
        if requalified_at is not None:
            recycled = replace(recycled, stage=STAGE_MQL)
            transitions.append(Transition(BECAME_MQL, RECYCLED, STAGE_MQL, requalified_at))
        return recycled, transitions
    if outcome == "converted" and converted_to in CONVERTED_STAGES and state.stage != converted_to:
        transition = Transition(f"became_{converted_to}", state.stage, converted_to, at)
        return replace(state, stage=converted_to), [transition]
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
        before = round(fit + _score_before(behaviour, playbook, at, order, with_it=False))
        after = round(fit + _score_before(behaviour, playbook, at, order, with_it=True))
        if before < threshold <= after:
            return at
    return None


def merge_behaviour(first: Behaviour, second: Behaviour, playbook: Playbook) -> Behaviour:
    """Two records' behaviour as one (the same either way round)."""
    caps = _caps(playbook)
    half_life_days = playbook.scoring.decay.half_life_days
    tallies = {}
    for rule in sorted(set(first.tallies) | set(second.tallies)):
        a, b = first.tallies.get(rule, RuleTally()), second.tallies.get(rule, RuleTally())
        times = [t for t in (a.as_of_us, b.as_of_us) if t is not None]
        as_of = max(times) if times else None
        if as_of is not None:
            a, b = _rebased(a, as_of, half_life_days), _rebased(b, as_of, half_life_days)
        throughs = [t for t in (a.settled_through, b.settled_through) if t is not None]
        through = max(throughs) if throughs else None
        cap = caps.get(rule)
        periods: dict[int, set[Award]] = {}
        for part in (a, b):
            for period, packed in part.periods:
                if through is None or period > through:
                    periods.setdefault(period, set()).update(unpack(packed))
        kept = []
        for p, aw in sorted(periods.items()):
            in_order = sorted(aw)
            earned = _awards(in_order, cap.points) if cap else [(y, y[2]) for y in in_order]
            kept.append((p, [x for x, _ in earned]))
        open_points = (
            sum(_period_value(aw, cap, as_of, half_life_days) for _, aw in kept)
            if as_of is not None
            else 0.0
        )
        packed_periods = tuple((p, pack(aw)) for p, aw in kept)
        tallies[rule] = RuleTally(
            a.settled + b.settled, open_points, as_of, packed_periods, through
        )
    recent = tuple(sorted(set(first.recent) | set(second.recent))[-RECENT_HITS:])
    return Behaviour(tallies, recent, first.origins | second.origins)


def merge(survivor: LeadState, absorbed: LeadState, playbook: Playbook) -> LeadState:
    """One lead from two records of the same person: all activities once, the furthest stage."""
    absorbed_origins = absorbed.behaviour.origins or frozenset({absorbed.lead_key})
    survivor_origins = survivor.behaviour.origins or frozenset({survivor.lead_key})
    if absorbed_origins <= survivor_origins:
        return survivor  # already merged: every activity counts once
    older, newer = sorted(
        (survivor, absorbed), key=lambda s: (s.last_activity_at is not None, s.last_activity_at)
    )
    times = [t for t in (survivor.evaluated_at, absorbed.evaluated_at) if t]
    lasts = [t for t in (survivor.last_activity_at, absorbed.last_activity_at) if t]
    recycles = [t for t in (survivor.recycled_at, absorbed.recycled_at) if t]
    behaviour = merge_behaviour(
        replace(survivor.behaviour, origins=survivor_origins),
        replace(absorbed.behaviour, origins=absorbed_origins),
        playbook,
    )
    merged = replace(
        survivor,
        email=survivor.email or absorbed.email,
        attributes={**older.attributes, **newer.attributes},
        behaviour=behaviour,
        stage=max((survivor.stage, absorbed.stage), key=lambda s: STAGE_RANK[s]),
        events_count=survivor.events_count + absorbed.events_count,
        last_activity_at=max(lasts) if lasts else None,
        evaluated_at=max(times) if times else None,
        recycled_at=max(recycles) if recycles else None,
    )
    at = merged.evaluated_at
    if at is None:
        return merged
    score = evaluate(merged, playbook, at)
    return replace(merged, score=score, tier=playbook.taxonomy.tier_for(score.total))


def next_score_change(state: LeadState, playbook: Playbook) -> datetime | None:
    """When decay alone will move the lead across its tier band or the MQL threshold, if ever.

    All behaviour points decay with one half-life, so B(t) = B0 * 2^(-(t - t0) / h) and the
    crossing time has a closed form. Totals are rounded, hence the half-point margins.
    """
    half_life_days = playbook.scoring.decay.half_life_days
    if not half_life_days or state.evaluated_at is None or state.tier is None:
        return None
    # Unrounded values: a rounding error of 0.005 points moves the crossing by minutes.
    fit, _, _ = fit_score(state.email, state.attributes, playbook)
    behaviour, _ = tallied_score(state.behaviour, playbook, state.evaluated_at)
    low, high = playbook.taxonomy.band(state.tier)
    lines = [low - 0.5, high - 0.5]
    if state.stage == STAGE_MQL:
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
