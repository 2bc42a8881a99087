"""Behaviour tallies: capped, decaying points per rule, in a size that does not grow with history.

Scoring is incremental: each activity updates a per-rule tally (`RuleTally`) whose size does
not grow with the lead's history, so an event costs the same for a lead with ten earlier
activities as for one with ten thousand. `behaviour_score` over the raw awards is the
definition the tallies agree with (a property test checks it). Caps are applied in event-time
order (ties by event id), so the order in which activities arrive does not change what they
earn.
"""

import math
from collections.abc import Iterable
from datetime import datetime

from services.scoring.core.compiled import CapRule, CompiledRules, compiled_rules
from services.scoring.core.records import (
    DAY_US,
    Award,
    Behaviour,
    CapPeriod,
    Hit,
    PackedPeriods,
    RecentAward,
    RuleTally,
    to_us,
)
from shared.playbook import Playbook
from shared.playbook.scoring_rules import Cap

# A closed cap period whose whole cap has decayed below this is folded into the rule's sum; a
# late activity for it could move the score by less than this (explanations show hundredths).
SETTLED_BELOW_POINTS = 0.005
# Newest awards kept one by one, for a recycle read after the activity that followed it.
RECENT_HITS = 48
# A capped rule's newest cap periods kept unpacked; older open ones wait, packed by the store,
# for a late activity (rare), so an event costs the same however many periods are open.
LIVE_PERIODS = 2


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


def _period_of(at_us: int, cap: CapRule) -> int:
    """`_period` from microseconds (at.timestamp() is exactly at_us / 10**6, rounded once)."""
    return math.floor(at_us / 1_000_000 / cap.period_s)


def _decayed(points: float, since: datetime, at: datetime, half_life_days: float | None) -> float:
    """`points` earned at `since`, as worth at `at`."""
    if not half_life_days:
        return float(points)
    return points * 0.5 ** ((at - since).total_seconds() / 86400 / half_life_days)


def decay_factor(since_us: int, at_us: int, half_life_days: float | None) -> float:
    """What one point earned at `since_us` is worth at `at_us` (above 1 going back in time)."""
    if not half_life_days or since_us == at_us:  # the latter: an activity at the lead's clock
        return 1.0
    return 0.5 ** ((at_us - since_us) / DAY_US / half_life_days)


def open_archive(archive: "tuple[CapPeriod, ...] | PackedPeriods") -> list[CapPeriod]:
    """The cap periods of an archive, oldest first (unpacked if the store kept them packed)."""
    return list(archive) if isinstance(archive, tuple) else list(archive.unpacked())


def all_periods(tally: RuleTally) -> list[CapPeriod]:
    """Every open cap period of a rule, archived and live, oldest first."""
    return open_archive(tally.archive) + list(tally.periods)


def earned_awards(awards: Iterable[Award], cap_points: int) -> list[tuple[Award, int]]:
    """What each award of one cap period earns, in event-time order; those earning 0 left out."""
    used, earned = 0, []
    for award in awards:
        awarded = min(award[2], cap_points - used)
        if awarded > 0:
            used += awarded
            earned.append((award, awarded))
    return earned


def period_value(
    awards: Iterable[Award], cap_points: int | None, at_us: int, half_life_days: float | None
) -> float:
    """A cap period's points at `at_us` (awards after it left out)."""
    earned = earned_awards(awards, cap_points) if cap_points else [(a, a[2]) for a in awards]
    return sum(
        awarded * decay_factor(award[0], at_us, half_life_days)
        for award, awarded in earned
        if award[0] <= at_us
    )


def _with_award(
    awards: tuple[Award, ...],
    award: Award,
    cap_points: int,
    as_of_us: int,
    half_life_days: float | None,
) -> tuple[tuple[Award, ...], float]:
    """A cap period with one more award: the awards that earn, and the points it gained."""
    if not awards or award > awards[-1]:
        # The newest of its period: the earlier awards keep what they earned (kept awards
        # fill the cap in order, so together they used min(their points, the cap)).
        room = cap_points
        for kept in awards:
            room -= kept[2]
        if room <= 0:
            return awards, 0.0
        earned = award[2] if award[2] < room else room
        if award[0] == as_of_us or not half_life_days:  # decay_factor, written out
            return (*awards, award), float(earned)
        return (*awards, award), earned * 0.5 ** ((as_of_us - award[0]) / DAY_US / half_life_days)
    after = tuple(a for a, _ in earned_awards(sorted((*awards, award)), cap_points))
    change = period_value(after, cap_points, as_of_us, half_life_days) - period_value(
        awards, cap_points, as_of_us, half_life_days
    )
    return after, change


def _add_award(
    tally: RuleTally,
    award: Award,
    cap: CapRule | None,
    half_life_days: float | None,
    clock_us: int,
) -> RuleTally:
    """The tally with one award counted (caps in event-time order), as of the lead's clock."""
    # decay_factor and _period_of are written out here: this runs for every award.
    at_us, _, points = award
    if cap is not None and points > 0:
        period = math.floor(at_us / 1_000_000 / cap.period_s)
        if tally.settled_through is not None and period <= tally.settled_through:
            return tally  # its period is folded: whatever it would change is below the threshold
    settled, open_points, as_of = tally.settled, tally.open, tally.as_of_us
    if as_of is None:
        as_of = at_us
    elif at_us > as_of:
        if half_life_days:
            factor = 0.5 ** ((at_us - as_of) / DAY_US / half_life_days)
            settled, open_points = settled * factor, open_points * factor
        as_of = at_us
    if cap is None or points <= 0:  # uncapped (negative points are never capped)
        if at_us == as_of or not half_life_days:
            settled += points
        else:
            settled += points * 0.5 ** ((as_of - at_us) / DAY_US / half_life_days)
        return RuleTally(
            settled,
            open_points,
            as_of,
            tally.periods,
            tally.settled_through,
            tally.archive,
            tally.archive_through,
        )
    if tally.archive_through is not None and period <= tally.archive_through:
        # A late activity for an archived period: the one slow path, and a rare one.
        archived = open_archive(tally.archive)
        archived, change = _into(archived, period, award, cap.points, as_of, half_life_days)
        return RuleTally(
            settled,
            open_points + change,
            as_of,
            tally.periods,
            tally.settled_through,
            tuple(archived),
            tally.archive_through,
        )
    periods = tally.periods
    if periods and periods[-1][0] == period:  # the usual case: the newest period
        awards, change = _with_award(periods[-1][1], award, cap.points, as_of, half_life_days)
        live = periods if awards is periods[-1][1] else (*periods[:-1], (period, awards))
    elif not periods or periods[-1][0] < period:  # a new newest period
        awards, change = _with_award((), award, cap.points, as_of, half_life_days)
        live = (*periods, (period, awards))
    else:
        listed, change = _into(list(periods), period, award, cap.points, as_of, half_life_days)
        live = tuple(listed)
    tally = RuleTally(
        settled,
        open_points + change,
        as_of,
        live,
        tally.settled_through,
        tally.archive,
        tally.archive_through,
    )
    if len(live) > LIVE_PERIODS:
        tally = _archive_oldest(tally, cap, half_life_days, clock_us)
    return tally


def _into(
    periods: list[CapPeriod],
    period: int,
    award: Award,
    cap_points: int,
    as_of_us: int,
    half_life_days: float | None,
) -> tuple[list[CapPeriod], float]:
    """Cap periods (oldest first) with the award in its period, and the points it gained."""
    i = len(periods)
    while i and periods[i - 1][0] > period:
        i -= 1
    if i and periods[i - 1][0] == period:
        awards, change = _with_award(periods[i - 1][1], award, cap_points, as_of_us, half_life_days)
        periods[i - 1] = (period, awards)
    else:
        awards, change = _with_award((), award, cap_points, as_of_us, half_life_days)
        periods.insert(i, (period, awards))
    return periods, change


def _archive_oldest(
    tally: RuleTally, cap: CapRule, half_life_days: float | None, clock_us: int
) -> RuleTally:
    """Move all but the LIVE_PERIODS newest periods into the archive, folding negligible ones.

    A period is folded into `settled` once its whole cap is worth less than
    SETTLED_BELOW_POINTS at the lead's clock: periods are in order, so the later ones are
    worth more and the fold stops at the first that is not.
    """
    moved = tally.periods[:-LIVE_PERIODS]
    archived = open_archive(tally.archive) + list(moved)
    settled, open_points, through = tally.settled, tally.open, tally.settled_through
    folded = 0
    if half_life_days and tally.as_of_us is not None:
        for period, awards in archived:
            end_us = int((period + 1) * cap.period_us)
            if cap.points * decay_factor(end_us, clock_us, half_life_days) >= SETTLED_BELOW_POINTS:
                break
            value = period_value(awards, cap.points, tally.as_of_us, half_life_days)
            settled, open_points, through = settled + value, open_points - value, period
            folded += 1
    archived = archived[folded:]
    return RuleTally(
        settled,
        open_points,
        tally.as_of_us,
        tally.periods[-LIVE_PERIODS:],
        through,
        tuple(archived),
        moved[-1][0],
    )


def tally_points(tally: RuleTally, at_us: int, half_life_days: float | None) -> float:
    """A rule's points at `at_us` (at or after the tally's reference time)."""
    if tally.as_of_us is None:
        return tally.settled + tally.open
    return (tally.settled + tally.open) * decay_factor(tally.as_of_us, at_us, half_life_days)


def _with_recent(
    recent: tuple[RecentAward, ...], fresh: list[RecentAward]
) -> tuple[RecentAward, ...]:
    """The RECENT_HITS newest of `recent` and `fresh`, each once, in event-time order."""
    if len(fresh) > 1:
        fresh.sort()
    if not recent or fresh[0] > recent[-1]:  # the usual case: newer than all kept
        merged = recent + tuple(fresh)
        return merged[-RECENT_HITS:] if len(merged) > RECENT_HITS else merged
    return tuple(sorted(set(recent).union(fresh))[-RECENT_HITS:])


def counted(
    behaviour: Behaviour,
    awards: list[tuple[str, CapRule | None, Award]],
    compiled: CompiledRules,
    clock_us: int,
    origins: frozenset[str],
) -> Behaviour:
    """The behaviour record with these (rule, its cap, award) counted, as of the lead's clock."""
    if not awards:
        if origins is behaviour.origins:
            return behaviour
        return Behaviour(behaviour.tallies, behaviour.recent, origins)
    half_life_days = compiled.half_life_days
    tallies = behaviour.tallies.copy()
    for rule, cap, award in awards:
        tally = tallies.get(rule) or EMPTY_TALLY
        tallies[rule] = _add_award(tally, award, cap, half_life_days, clock_us)
    recent = behaviour.recent
    if len(awards) == 1:  # the usual case, without the list: one award newer than all kept
        rule, _, award = awards[0]
        newest = (award[0], award[1], rule, award[2])
        if not recent or newest > recent[-1]:
            recent += (newest,)
            if len(recent) > RECENT_HITS:
                recent = recent[-RECENT_HITS:]
            return Behaviour(tallies, recent, origins)
    fresh = [(award[0], award[1], rule, award[2]) for rule, _, award in awards]
    return Behaviour(tallies, _with_recent(recent, fresh), origins)


EMPTY_TALLY = RuleTally()


def add_hits(
    behaviour: Behaviour, hits: Iterable[Hit], playbook: Playbook, clock: datetime
) -> Behaviour:
    """The behaviour record with these awards counted, as of the lead's clock `clock`."""
    compiled = compiled_rules(playbook)
    awards = [
        (h.rule, compiled.caps.get(h.rule), (to_us(h.at), h.event_id, h.points)) for h in hits
    ]
    return counted(behaviour, awards, compiled, to_us(clock), behaviour.origins)


def tallied_score(
    behaviour: Behaviour, playbook: Playbook, at: datetime
) -> tuple[float, list[tuple[str, float]]]:
    """Behaviour points at `at` from the tallies (at or after the lead's clock)."""
    half_life_days = playbook.scoring.decay.half_life_days
    at_us = to_us(at)
    per_rule = {
        rule: tally_points(tally, at_us, half_life_days)
        for rule, tally in behaviour.tallies.items()
    }
    return sum(per_rule.values()), [(f"behaviour:{r}", v) for r, v in per_rule.items()]


def score_before(
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
    caps = compiled_rules(playbook).caps
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
                settled -= points * decay_factor(at_gone, tally.as_of_us, half_life_days)
        total += settled * decay_factor(tally.as_of_us, at_us, half_life_days)
        gone_ids = {(r[0], r[1]) for r in gone}
        for _, awards in all_periods(tally):
            kept = [a for a in awards if (a[0], a[1]) not in gone_ids]
            total += period_value(kept, cap.points if cap else None, at_us, half_life_days)
    return total
