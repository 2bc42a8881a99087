"""Pure scoring: a lead's fit and decaying behaviour score, its tier and its lifecycle stage.

No I/O and no clock: every function takes the time it scores at. The score at a time t is a
function of the lead's attributes and activities alone, so live processing, a replay and a
decay timer all agree. Caps are applied in event-time order (ties by event id), so the order
in which activities arrive does not change what they earn. An activity is judged at the
lead's own event-time clock (its newest activity's time), never at the time a decay timer
happened to fire, so the stage a lead reaches depends on its activities and sales outcomes,
not on when they were processed.
"""

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.events import LeadActivityData
from shared.playbook import Playbook

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
CONVERTED_STAGES = {"sql", "opportunity", "customer"}


@dataclass(frozen=True)
class Hit:
    """Raw behaviour points a rule gave for one activity (caps and decay apply on evaluation)."""

    rule: str
    points: int
    at: datetime
    event_id: str


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
    hits: tuple[Hit, ...] = ()
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
    hits: tuple[Hit, ...], playbook: Playbook, at: datetime
) -> tuple[float, list[tuple[str, float]]]:
    """Behaviour points at `at`: capped per rule and period in event-time order, then decayed."""
    caps = {r.rule_name: r.cap for r in playbook.scoring.behaviour}
    half_life_days = playbook.scoring.decay.half_life_days
    used: dict[tuple[str, int], int] = {}
    per_rule: dict[str, float] = {}
    for hit in sorted(hits, key=lambda h: (h.at, h.event_id)):
        if hit.at > at:
            continue
        awarded = hit.points
        cap = caps.get(hit.rule)
        if cap and awarded > 0:
            bucket = (hit.rule, math.floor(hit.at.timestamp() / (cap.period_days * 86400)))
            awarded = min(awarded, cap.points - used.get(bucket, 0))
            used[bucket] = used.get(bucket, 0) + max(awarded, 0)
        if awarded <= 0 and hit.points > 0:
            continue
        if half_life_days:
            age_days = (at - hit.at).total_seconds() / 86400
            value = awarded * 0.5 ** (age_days / half_life_days)
        else:
            value = float(awarded)
        per_rule[hit.rule] = per_rule.get(hit.rule, 0.0) + value
    return sum(per_rule.values()), [(f"behaviour:{r}", v) for r, v in per_rule.items()]


def evaluate(state: LeadState, playbook: Playbook, at: datetime) -> Score:
    """The lead's score at `at`."""
    fit, fit_parts, disqualified = fit_score(state.email, state.attributes, playbook)
    behaviour, behaviour_parts = behaviour_score(state.hits, playbook, at)
    parts = sorted(
        ((r, round(p, 2)) for r, p in fit_parts + behaviour_parts), key=lambda rp: (-rp[1], rp[0])
    )
    return Score(
        round(fit, 2), round(behaviour, 2), round(fit + behaviour), tuple(parts), disqualified
    )


def apply_activity(
    state: LeadState, data: LeadActivityData, event_id: str, playbook: Playbook
) -> tuple[LeadState, list[Transition]]:
    """The lead after one activity, and the lifecycle transitions it caused."""
    activity = data.activity
    new_hits = tuple(
        Hit(rule.rule_name, rule.points, activity.occurred_at, event_id)
        for rule in playbook.scoring.behaviour
        if rule.matches(activity.type, activity.properties)
    )
    last = state.last_activity_at
    # The lead's event-time clock: a late activity is judged with everything it already did.
    at = max(last, activity.occurred_at) if last else activity.occurred_at
    updated = replace(
        state,
        email=data.identity.email or state.email,
        attributes={**state.attributes, **data.attributes},
        hits=state.hits + new_hits,
        events_count=state.events_count + 1,
        last_activity_at=max(last, activity.occurred_at) if last else activity.occurred_at,
    )
    qualifies = _may_requalify(state, activity.occurred_at, at, playbook)
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
    """The time of the first activity at or after `since` that lifted the total to the threshold."""
    threshold = playbook.taxonomy.mql_threshold
    order = sorted({(h.at, h.event_id) for h in state.hits if h.at >= since})
    for at, event_id in order:
        earlier = tuple(h for h in state.hits if (h.at, h.event_id) < (at, event_id))
        with_it = tuple(h for h in state.hits if (h.at, h.event_id) <= (at, event_id))
        before = evaluate(replace(state, hits=earlier), playbook, at).total
        after = evaluate(replace(state, hits=with_it), playbook, at).total
        if before < threshold <= after:
            return at
    return None


def merge(survivor: LeadState, absorbed: LeadState, playbook: Playbook) -> LeadState:
    """One lead from two records of the same person: all activities once, the furthest stage."""
    seen = {h.event_id + h.rule for h in survivor.hits}
    hits = survivor.hits + tuple(h for h in absorbed.hits if h.event_id + h.rule not in seen)
    older, newer = sorted(
        (survivor, absorbed), key=lambda s: (s.last_activity_at is not None, s.last_activity_at)
    )
    times = [t for t in (survivor.evaluated_at, absorbed.evaluated_at) if t]
    lasts = [t for t in (survivor.last_activity_at, absorbed.last_activity_at) if t]
    recycles = [t for t in (survivor.recycled_at, absorbed.recycled_at) if t]
    merged = replace(
        survivor,
        email=survivor.email or absorbed.email,
        attributes={**older.attributes, **newer.attributes},
        hits=hits,
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
    behaviour, _ = behaviour_score(state.hits, playbook, state.evaluated_at)
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
