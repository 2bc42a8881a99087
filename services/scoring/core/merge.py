"""Merging two records of the same person: every activity once, the furthest stage."""

from dataclasses import replace

from services.scoring.core.compiled import compiled_rules
from services.scoring.core.records import Award, Behaviour, CapPeriod, RuleTally
from services.scoring.core.score import LeadState, evaluate
from services.scoring.core.tallies import (
    EMPTY_TALLY,
    LIVE_PERIODS,
    RECENT_HITS,
    all_periods,
    decay_factor,
    earned_awards,
    period_value,
)
from shared.playbook import Playbook
from shared.vocabulary import Stage

# Funnel rank: a merge keeps the furthest stage; a recycled lead was seen by sales, so it
# outranks a fresh one.
STAGE_RANK = {
    Stage.SUBSCRIBER: 0,
    Stage.LEAD: 1,
    Stage.RECYCLED: 2,
    Stage.MQL: 3,
    Stage.SQL: 4,
    Stage.OPPORTUNITY: 5,
    Stage.CUSTOMER: 6,
    Stage.DISQUALIFIED: 7,
}


def _rebased(tally: RuleTally, at_us: int, half_life_days: float | None) -> RuleTally:
    """The tally with its reference time moved forward to `at_us` (never back)."""
    if tally.as_of_us is None:
        return replace(tally, as_of_us=at_us)
    if at_us <= tally.as_of_us:
        return tally
    factor = decay_factor(tally.as_of_us, at_us, half_life_days)
    return replace(tally, settled=tally.settled * factor, open=tally.open * factor, as_of_us=at_us)


def merge_behaviour(first: Behaviour, second: Behaviour, playbook: Playbook) -> Behaviour:
    """Two records' behaviour as one (the same either way round)."""
    caps = compiled_rules(playbook).caps
    half_life_days = playbook.scoring.decay.half_life_days
    tallies = {}
    for rule in sorted(set(first.tallies) | set(second.tallies)):
        a, b = first.tallies.get(rule, EMPTY_TALLY), second.tallies.get(rule, EMPTY_TALLY)
        times = [t for t in (a.as_of_us, b.as_of_us) if t is not None]
        as_of = max(times) if times else None
        if as_of is not None:
            a, b = _rebased(a, as_of, half_life_days), _rebased(b, as_of, half_life_days)
        throughs = [t for t in (a.settled_through, b.settled_through) if t is not None]
        through = max(throughs) if throughs else None
        cap = caps.get(rule)
        cap_points = cap.points if cap else None
        periods: dict[int, set[Award]] = {}
        for part in (a, b):
            for period, awards in all_periods(part):
                if through is None or period > through:
                    periods.setdefault(period, set()).update(awards)
        kept: list[CapPeriod] = []
        for p, aw in sorted(periods.items()):
            in_order = sorted(aw)
            earned = (
                earned_awards(in_order, cap_points) if cap_points else [(y, y[2]) for y in in_order]
            )
            kept.append((p, tuple(x for x, _ in earned)))
        open_points = (
            sum(period_value(aw, cap_points, as_of, half_life_days) for _, aw in kept)
            if as_of is not None
            else 0.0
        )
        archived, live = kept[:-LIVE_PERIODS], kept[-LIVE_PERIODS:]
        tallies[rule] = RuleTally(
            a.settled + b.settled,
            open_points,
            as_of,
            tuple(live),
            through,
            tuple(archived),
            archived[-1][0] if archived else None,
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
