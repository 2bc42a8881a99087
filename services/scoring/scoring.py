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

The records (LeadState, Behaviour, RuleTally, Score) are never changed in place: every
function returns new ones and shares what did not change (a test checks the inputs stay as
they were). They are not frozen dataclasses only because building a frozen record costs a
sixth of a backtest event (x1.16 on the backtest without it, same run).
"""

import base64
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared import jsoncodec
from shared.events import LeadActivityData
from shared.playbook import Playbook
from shared.playbook.qualification import qualifies
from shared.playbook.scoring_rules import Cap, Scoring
from shared.playbook.taxonomy import Taxonomy

# An activity dated further ahead of the moment ingest accepted it is taken as of that moment
# plus this, so one bad clock cannot push the lead's event-time clock years ahead.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
# A closed cap period whose whole cap has decayed below this is folded into the rule's sum; a
# late activity for it could move the score by less than this (explanations show hundredths).
SETTLED_BELOW_POINTS = 0.005
# Newest awards kept one by one, for a recycle read after the activity that followed it.
RECENT_HITS = 48
# A capped rule's newest cap periods kept unpacked; older open ones wait, packed as one text,
# for a late activity (rare), so an event costs the same however many periods are open.
LIVE_PERIODS = 2

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


@dataclass(frozen=True, slots=True)
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
# One cap period's awards that earn points, in event-time order (at most the cap's worth).
CapPeriod = tuple[int, tuple[Award, ...]]


@dataclass(slots=True)
class RuleTally:
    """One behaviour rule's points so far, in a size that does not grow with activity.

    Every award decays with the same half-life, so a sum of decayed awards is one number
    carried forward to a reference time (`as_of_us`). `settled` sums the awards that can no
    longer change; `open` sums those of the cap periods still open, which a capped rule keeps
    award by award in event-time order (at most the cap's points of them), because a late
    activity can take its place in its period and push a later award out. The newest
    LIVE_PERIODS of them are in `periods`; older ones wait in `archive`, as the packed text a
    row holds until a late activity lands in one or a period moves in, so the record is read
    and written per event at the same cost however long the history. When a period moves into the
    archive, those whose whole cap is worth less than SETTLED_BELOW_POINTS move from `open`
    into `settled`.
    """

    settled: float = 0.0
    open: float = 0.0
    as_of_us: int | None = None
    periods: tuple[CapPeriod, ...] = ()
    settled_through: int | None = None  # cap periods up to this one are folded into `settled`
    # Open cap periods older than `periods`: packed (seal_archive) as read from a row, or the
    # periods themselves once a change opened them (packed again when the row is written).
    archive: "str | tuple[CapPeriod, ...]" = ""
    archive_through: int | None = None  # the newest period that belongs in the archive


@dataclass(slots=True)
class Behaviour:
    """A lead's behaviour record: a tally per rule, plus its newest awards for recycle checks.

    `recent` keeps the RECENT_HITS newest awards (event-time order): a recycle read after later
    activity looks at them to tell whether that activity requalified the lead. `origins` names
    every lead record folded into this one, so merging the same record twice changes nothing.
    """

    tallies: dict[str, RuleTally] = field(default_factory=dict)
    recent: tuple[RecentAward, ...] = ()
    origins: frozenset[str] = frozenset()


class Score:
    """A lead's score at one moment, with what each rule contributed, largest first.

    A score worked out by the core sorts and rounds its contributions when they are first
    read: most events change a score without anyone reading why.
    """

    __slots__ = (
        "fit",
        "behaviour",
        "total",
        "disqualified",
        "_contributions",
        "_compiled",
        "_email",
        "_attributes",
        "_behaviour",
        "_at",
        "_at_us",
        "_fit",
    )

    fit: float
    behaviour: float
    total: int
    disqualified: bool
    _contributions: tuple[tuple[str, float], ...] | None
    # What a worked-out score came from (`_compiled` None: given, as read from a row). The
    # next activity reuses `_fit` when the rules, email and attributes are the same.
    _compiled: "_Compiled | None"
    _email: str | None
    _attributes: dict[str, Any] | None
    _behaviour: Behaviour | None  # dropped once the contributions are worked out
    _at: datetime | None  # when an activity's score was worked out, if it says (at _at_us)
    _at_us: int
    _fit: float

    def __init__(
        self,
        fit: float,
        behaviour: float,
        total: int,
        contributions: tuple[tuple[str, float], ...] = (),
        disqualified: bool = False,
    ) -> None:
        self.fit = fit
        self.behaviour = behaviour
        self.total = total
        self.disqualified = disqualified
        self._contributions = tuple(contributions)
        self._compiled = None
        self._email = None
        self._attributes = None
        self._behaviour = None
        self._at = None
        self._at_us = 0
        self._fit = fit

    @property
    def contributions(self) -> tuple[tuple[str, float], ...]:
        """(rule, points) per rule, largest first, to the hundredth."""
        contributions = self._contributions
        if contributions is None:
            compiled, attributes, behaviour = self._compiled, self._attributes, self._behaviour
            assert compiled is not None and attributes is not None and behaviour is not None
            parts = _parts_at(compiled, self._email, attributes, behaviour, self._at_us)
            rounded = [(rule, round(points, 2)) for rule, points in parts]
            rounded.sort(key=lambda rp: (-rp[1], rp[0]))
            contributions = self._contributions = tuple(rounded)
            self._behaviour = None
        return contributions

    def _key(self) -> tuple[Any, ...]:
        return (self.fit, self.behaviour, self.total, self.contributions, self.disqualified)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Score) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Score(fit={self.fit!r}, behaviour={self.behaviour!r}, total={self.total!r}, "
            f"contributions={self.contributions!r}, disqualified={self.disqualified!r})"
        )


@dataclass(slots=True)
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


@dataclass(frozen=True, slots=True)
class Transition:
    """A lifecycle change, and when it happened."""

    name: str
    previous_stage: str
    stage: str
    at: datetime
    previous_tier: str | None = None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
_ONE_US = timedelta(microseconds=1)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch (exact)."""
    return (at - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The time `us` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class _CapRule:
    """A cap in the units the core counts in."""

    points: int
    period_s: float  # as `_period` divides: the same float arithmetic as the raw definition
    period_us: float


@dataclass(frozen=True, slots=True)
class _BehaviourRule:
    name: str
    points: int
    conditions: tuple[tuple[str, Callable[[Any], bool]], ...]
    cap: _CapRule | None

    def matches(self, properties: dict[str, Any]) -> bool:
        for key, test in self.conditions:
            if not test(properties.get(key)):
                return False
        return True


@dataclass(frozen=True, slots=True)
class _FitRule:
    attribute: str
    test: Callable[[Any], bool]
    label: str
    points: int
    disqualify: bool


class _Compiled:
    """A playbook's scoring rules prepared once: behaviour rules by activity type, tests built."""

    def __init__(self, scoring: Scoring, taxonomy: Taxonomy) -> None:
        self.half_life_days = scoring.decay.half_life_days
        by_activity: dict[str, list[_BehaviourRule]] = {}
        self.caps: dict[str, _CapRule] = {}
        for rule in scoring.behaviour:
            cap = rule.cap
            compiled = _BehaviourRule(
                rule.rule_name,
                rule.points,
                tuple((key, condition.matcher()) for key, condition in rule.when.items()),
                _CapRule(cap.points, cap.period_days * 86400, cap.period_days * DAY_US)
                if cap
                else None,
            )
            by_activity.setdefault(rule.activity, []).append(compiled)
            if compiled.cap:
                self.caps[compiled.name] = compiled.cap
        self.by_activity = {kind: tuple(rules) for kind, rules in by_activity.items()}
        self.fit = tuple(
            _FitRule(r.attribute, r.matcher(), f"fit:{r.name}", r.points, r.disqualify)
            for r in scoring.fit
        )
        self.labels = {r.rule_name: f"behaviour:{r.rule_name}" for r in scoring.behaviour}
        # Fit by the values it reads: a lead keeps them for many events.
        self.fit_attributes = tuple(dict.fromkeys(r.attribute for r in scoring.fit))
        self.fits: dict[tuple[Any, ...], tuple[float, list[tuple[str, float]], bool]] = {}
        self.threshold = taxonomy.mql_threshold
        self.qualification = taxonomy.qualification
        self.tiers = tuple((t.min_score, t.name) for t in taxonomy.tiers)
        self.tier_of: dict[float, str] = {}  # tier_for by total: totals repeat

    def label(self, rule: str) -> str:
        return self.labels.get(rule) or f"behaviour:{rule}"  # a rule the playbook dropped

    def tier_for(self, total: float) -> str:
        name = next((name for min_score, name in self.tiers if total >= min_score), None)
        if name is None:
            name = self.tiers[-1][1]
        if len(self.tier_of) < 4096:
            self.tier_of[total] = name
        return name

    def fit_of(
        self, email: str | None, attributes: dict[str, Any]
    ) -> tuple[float, list[tuple[str, float]], bool]:
        """Fit points, their parts and disqualification (shared: the parts must not change)."""
        values = [attributes.get(name) for name in self.fit_attributes]
        try:
            # With the types: 1, 1.0 and True are equal keys but not the same to a regex.
            key = (email, *values, *map(type, values))
            known = self.fits.get(key)
        except TypeError:  # an attribute holds a list or an object: work it out each time
            return self._fit_score(email, attributes)
        if known is None:
            if len(self.fits) >= 65536:
                self.fits.clear()
            known = self.fits[key] = self._fit_score(email, attributes)
        return known

    def _fit_score(
        self, email: str | None, attributes: dict[str, Any]
    ) -> tuple[float, list[tuple[str, float]], bool]:
        domain = email.rsplit("@", 1)[1] if email and "@" in email else None
        total, parts, disqualified = 0.0, [], False
        for rule in self.fit:
            value: Any
            if rule.attribute == "email_domain" and domain is not None:
                value = domain
            else:
                value = attributes.get(rule.attribute)
            if rule.test(value):
                disqualified = disqualified or rule.disqualify
                if rule.points:
                    total += rule.points
                    parts.append((rule.label, float(rule.points)))
        return total, parts, disqualified


_COMPILED: dict[int, tuple[Playbook, _Compiled]] = {}


def _compiled(playbook: Playbook) -> _Compiled:
    """The playbook's rules prepared for scoring (built on first use)."""
    # By the playbook object: playbooks are frozen, so the same object always holds the same
    # rules, and a changed copy is another object. The entry holds the playbook itself, so its
    # id cannot be reused while the entry exists.
    entry = _COMPILED.get(id(playbook))
    if entry is None or entry[0] is not playbook:
        if len(_COMPILED) >= 32:  # tests and backtests make many playbooks; keep a few
            _COMPILED.clear()
        entry = _COMPILED[id(playbook)] = (
            playbook,
            _Compiled(playbook.scoring, playbook.taxonomy),
        )
    return entry[1]


def fit_score(
    email: str | None, attributes: dict[str, Any], playbook: Playbook
) -> tuple[float, list[tuple[str, float]], bool]:
    """Points for who the lead is, what gave them, and whether a rule disqualifies the lead."""
    total, parts, disqualified = _compiled(playbook).fit_of(email, attributes)
    return total, list(parts), disqualified


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


def _period_of(at_us: int, cap: _CapRule) -> int:
    """`_period` from microseconds (at.timestamp() is exactly at_us / 10**6, rounded once)."""
    return math.floor(at_us / 1_000_000 / cap.period_s)


def _decayed(points: float, since: datetime, at: datetime, half_life_days: float | None) -> float:
    """`points` earned at `since`, as worth at `at`."""
    if not half_life_days:
        return float(points)
    return points * 0.5 ** ((at - since).total_seconds() / 86400 / half_life_days)


def _factor(since_us: int, at_us: int, half_life_days: float | None) -> float:
    """What one point earned at `since_us` is worth at `at_us` (above 1 going back in time)."""
    if not half_life_days or since_us == at_us:  # the latter: an activity at the lead's clock
        return 1.0
    return 0.5 ** ((at_us - since_us) / DAY_US / half_life_days)


def pack(awards: Iterable[Award]) -> str:
    """A cap period's awards as compact JSON text (the form rows before the archive kept)."""
    return jsoncodec.dumps(list(awards))


def unpack(packed: str) -> tuple[Award, ...]:
    """A cap period's awards from their JSON text, in event-time order."""
    return tuple((at_us, event_id, points) for at_us, event_id, points in jsoncodec.loads(packed))


def seal_archive(archive: "str | tuple[CapPeriod, ...]") -> str:
    """Cap periods as one text: compressed JSON in base64, which JSON carries without escapes.

    The row is read and written with every event, the archive opened only now and then, so
    it is kept small rather than quick to open.
    """
    if isinstance(archive, str):
        return archive
    if not archive:
        return ""
    return base64.b64encode(zlib.compress(orjson.dumps(archive))).decode("ascii")


def open_archive(sealed: "str | tuple[CapPeriod, ...]") -> list[CapPeriod]:
    """The cap periods of an archive, oldest first."""
    if not isinstance(sealed, str):
        return list(sealed)
    if not sealed:
        return []
    return [
        (period, tuple((at_us, event_id, points) for at_us, event_id, points in awards))
        for period, awards in orjson.loads(zlib.decompress(base64.b64decode(sealed)))
    ]


def all_periods(tally: RuleTally) -> list[CapPeriod]:
    """Every open cap period of a rule, archived and live, oldest first."""
    return open_archive(tally.archive) + list(tally.periods)


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
    awards: Iterable[Award], cap_points: int | None, at_us: int, half_life_days: float | None
) -> float:
    """A cap period's points at `at_us` (awards after it left out)."""
    earned = _awards(awards, cap_points) if cap_points else [(a, a[2]) for a in awards]
    return sum(
        awarded * _factor(award[0], at_us, half_life_days)
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
        if award[0] == as_of_us or not half_life_days:  # _factor, written out
            return (*awards, award), float(earned)
        return (*awards, award), earned * 0.5 ** ((as_of_us - award[0]) / DAY_US / half_life_days)
    after = tuple(a for a, _ in _awards(sorted((*awards, award)), cap_points))
    change = _period_value(after, cap_points, as_of_us, half_life_days) - _period_value(
        awards, cap_points, as_of_us, half_life_days
    )
    return after, change


def _add_award(
    tally: RuleTally,
    award: Award,
    cap: _CapRule | None,
    half_life_days: float | None,
    clock_us: int,
) -> RuleTally:
    """The tally with one award counted (caps in event-time order), as of the lead's clock."""
    # _factor and _period_of are written out here: this runs for every award.
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
    tally: RuleTally, cap: _CapRule, half_life_days: float | None, clock_us: int
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
            if cap.points * _factor(end_us, clock_us, half_life_days) >= SETTLED_BELOW_POINTS:
                break
            value = _period_value(awards, cap.points, tally.as_of_us, half_life_days)
            settled, open_points, through = settled + value, open_points - value, period
            folded += 1
    archived = archived[folded:]
    return RuleTally(
        settled,
        open_points,
        tally.as_of_us,
        tally.periods[-LIVE_PERIODS:],
        through,
        tuple(archived) or "",
        moved[-1][0],
    )


def _tally_points(tally: RuleTally, at_us: int, half_life_days: float | None) -> float:
    """A rule's points at `at_us` (at or after the tally's reference time)."""
    if tally.as_of_us is None:
        return tally.settled + tally.open
    return (tally.settled + tally.open) * _factor(tally.as_of_us, at_us, half_life_days)


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


def _counted(
    behaviour: Behaviour,
    awards: list[tuple[str, _CapRule | None, Award]],
    compiled: _Compiled,
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
        tally = tallies.get(rule) or _EMPTY_TALLY
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


_EMPTY_TALLY = RuleTally()


def add_hits(
    behaviour: Behaviour, hits: Iterable[Hit], playbook: Playbook, clock: datetime
) -> Behaviour:
    """The behaviour record with these awards counted, as of the lead's clock `clock`."""
    compiled = _compiled(playbook)
    awards = [
        (h.rule, compiled.caps.get(h.rule), (to_us(h.at), h.event_id, h.points)) for h in hits
    ]
    return _counted(behaviour, awards, compiled, to_us(clock), behaviour.origins)


def tallied_score(
    behaviour: Behaviour, playbook: Playbook, at: datetime
) -> tuple[float, list[tuple[str, float]]]:
    """Behaviour points at `at` from the tallies (at or after the lead's clock)."""
    half_life_days = playbook.scoring.decay.half_life_days
    at_us = to_us(at)
    per_rule = {
        rule: _tally_points(tally, at_us, half_life_days)
        for rule, tally in behaviour.tallies.items()
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
    caps = _compiled(playbook).caps
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
        for _, awards in all_periods(tally):
            kept = [a for a in awards if (a[0], a[1]) not in gone_ids]
            total += _period_value(kept, cap.points if cap else None, at_us, half_life_days)
    return total


def _score_at(
    compiled: "_Compiled",
    email: str | None,
    attributes: dict[str, Any],
    behaviour: Behaviour,
    at_us: int,
    previous: Score | None = None,
    at: datetime | None = None,
) -> Score:
    """The score at `at_us` (at or after the lead's clock); fit from `previous` if it holds."""
    score = Score.__new__(Score)
    if (
        previous is not None
        and previous._compiled is compiled
        and previous._attributes is attributes
        and previous._email == email
    ):
        fit = previous._fit
        score.fit = previous.fit
        score.disqualified = previous.disqualified
    else:
        fit, _, score.disqualified = compiled.fit_of(email, attributes)
        score.fit = round(fit, 2)
    half_life_days = compiled.half_life_days
    points = 0.0
    for tally in behaviour.tallies.values():  # _tally_points, inlined: it runs per rule per event
        as_of_us = tally.as_of_us
        if as_of_us is None or as_of_us == at_us or not half_life_days:
            points += tally.settled + tally.open  # (a factor of exactly 1 at the tally's time)
        else:
            points += (tally.settled + tally.open) * 0.5 ** (
                (at_us - as_of_us) / DAY_US / half_life_days
            )
    score.behaviour = round(points, 2)
    score.total = round(fit + points)
    score._contributions = None
    score._compiled = compiled
    score._email = email
    score._attributes = attributes
    score._behaviour = behaviour
    score._at = at
    score._at_us = at_us
    score._fit = fit
    return score


def _parts_at(
    compiled: "_Compiled",
    email: str | None,
    attributes: dict[str, Any],
    behaviour: Behaviour,
    at_us: int,
) -> list[tuple[str, float]]:
    """What each fit and behaviour rule gives at `at_us`, unrounded."""
    _, parts, _ = compiled.fit_of(email, attributes)
    half_life_days = compiled.half_life_days
    return parts + [
        (compiled.label(rule), _tally_points(tally, at_us, half_life_days))
        for rule, tally in behaviour.tallies.items()
    ]


def evaluate(state: LeadState, playbook: Playbook, at: datetime) -> Score:
    """The lead's score at `at` (never earlier than the lead's own clock)."""
    if state.last_activity_at is not None and at < state.last_activity_at:
        at = state.last_activity_at
    return _score_at(_compiled(playbook), state.email, state.attributes, state.behaviour, to_us(at))


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
    rules = _compiled(playbook).by_activity.get(activity.type, ())
    return tuple(
        Hit(rule.name, rule.points, at, event_id)
        for rule in rules
        if rule.matches(activity.properties)
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
    entry = _COMPILED.get(id(playbook))  # _compiled, written out
    compiled = entry[1] if entry is not None and entry[0] is playbook else _compiled(playbook)
    activity = data.activity
    last = state.last_activity_at
    at, at_us = occurred_at, occurred_us
    if last is not None:
        # The previous activity's score knows its time in microseconds: no datetime arithmetic.
        previous = state.score
        last_us = previous._at_us if previous._at is last else to_us(last)
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
    behaviour = _counted(behaviour, awards, compiled, at_us, origins)
    email = data.identity.email or state.email
    attributes = _merged_attributes(state.attributes, data.attributes)
    qualifies = state.stage != RECYCLED or _may_requalify(state, occurred_at, at, playbook)
    score = _score_at(compiled, email, attributes, behaviour, at_us, state.score, at)
    stage, tier, transitions = _judged(compiled, state, state.stage, score, at, qualifies)
    if state.events_count == 0:  # the funnel counts leads from this
        transitions.insert(0, Transition(BECAME_LEAD, state.stage, stage, at))
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


def _judged(
    compiled: _Compiled,
    before: LeadState,
    stage: str,
    score: Score,
    at: datetime,
    may_qualify: bool,
) -> tuple[str, str, list[Transition]]:
    """The stage and tier a new score gives, and the transitions from `before`."""
    tier = compiled.tier_of.get(score.total) or compiled.tier_for(score.total)
    threshold = compiled.threshold
    transitions = []
    if score.disqualified and stage != "disqualified":
        transitions.append(Transition(DISQUALIFIED, stage, "disqualified", at))
        stage = "disqualified"
    elif (
        may_qualify
        and stage in QUALIFIABLE
        and qualifies(score.total, score.fit, score.behaviour, threshold, compiled.qualification)
    ):
        transitions.append(Transition(BECAME_MQL, stage, STAGE_MQL, at))
        stage = STAGE_MQL
    elif stage == STAGE_MQL and before.score.total >= threshold > score.total:
        transitions.append(Transition(BELOW_THRESHOLD, stage, stage, at))
    if before.tier is not None and tier != before.tier and stage != "disqualified":
        transitions.append(Transition(TIER_CHANGED, stage, stage, at, previous_tier=before.tier))
    return stage, tier, transitions


def rescore(
    before: LeadState, after: LeadState, playbook: Playbook, at: datetime, *, may_qualify: bool
) -> tuple[LeadState, list[Transition]]:
    """Score `after` at `at` and name the transitions from `before`.

    Only activities qualify a lead (`may_qualify`); time alone can only cool it down.
    """
    score = evaluate(after, playbook, at)
    stage, tier, transitions = _judged(
        _compiled(playbook), before, after.stage, score, at, may_qualify
    )
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


def _rebased(tally: RuleTally, at_us: int, half_life_days: float | None) -> RuleTally:
    """The tally with its reference time moved forward to `at_us` (never back)."""
    if tally.as_of_us is None:
        return replace(tally, as_of_us=at_us)
    if at_us <= tally.as_of_us:
        return tally
    factor = _factor(tally.as_of_us, at_us, half_life_days)
    return replace(tally, settled=tally.settled * factor, open=tally.open * factor, as_of_us=at_us)


def merge_behaviour(first: Behaviour, second: Behaviour, playbook: Playbook) -> Behaviour:
    """Two records' behaviour as one (the same either way round)."""
    caps = _compiled(playbook).caps
    half_life_days = playbook.scoring.decay.half_life_days
    tallies = {}
    for rule in sorted(set(first.tallies) | set(second.tallies)):
        a, b = first.tallies.get(rule, _EMPTY_TALLY), second.tallies.get(rule, _EMPTY_TALLY)
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
            earned = _awards(in_order, cap_points) if cap_points else [(y, y[2]) for y in in_order]
            kept.append((p, tuple(x for x, _ in earned)))
        open_points = (
            sum(_period_value(aw, cap_points, as_of, half_life_days) for _, aw in kept)
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
            tuple(archived) or "",
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
