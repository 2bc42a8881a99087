"""The scoring core's records: awards, per-rule tallies, a lead's behaviour, transitions.

The records are never changed in place: every function of the core returns new ones and
shares what did not change (a test checks the inputs stay as they were). They are not frozen
dataclasses only because building a frozen record costs a sixth of a backtest event (x1.16 on
the backtest without it, same run).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.vocabulary import LifecycleTransition, Stage


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


class PackedPeriods(Protocol):
    """Cap periods a store keeps packed, opened only when a late activity needs them.

    The core never packs: how the periods are kept is the store's business
    (services/scoring/codec.py).
    """

    def unpacked(self) -> tuple[CapPeriod, ...]:
        """The cap periods, oldest first."""
        ...


@dataclass(slots=True)
class RuleTally:
    """One behaviour rule's points so far, in a size that does not grow with activity.

    Every award decays with the same half-life, so a sum of decayed awards is one number
    carried forward to a reference time (`as_of_us`). `settled` sums the awards that can no
    longer change; `open` sums those of the cap periods still open, which a capped rule keeps
    award by award in event-time order (at most the cap's points of them), because a late
    activity can take its place in its period and push a later award out. The newest
    LIVE_PERIODS of them are in `periods`; older ones wait in `archive`, packed as the store
    read them (`PackedPeriods`) until a late activity lands in one or a period moves in, so
    the record is read and written per event at the same cost however long the history. When
    a period moves into the archive, those whose whole cap is worth less than
    SETTLED_BELOW_POINTS move from `open` into `settled`.
    """

    settled: float = 0.0
    open: float = 0.0
    as_of_us: int | None = None
    periods: tuple[CapPeriod, ...] = ()
    settled_through: int | None = None  # cap periods up to this one are folded into `settled`
    # Open cap periods older than `periods`: packed as read from the store, or the periods
    # themselves once a change opened them (the store packs them again when it writes them).
    archive: "tuple[CapPeriod, ...] | PackedPeriods" = ()
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


@dataclass(frozen=True, slots=True)
class Transition:
    """A lifecycle change, and when it happened."""

    name: LifecycleTransition
    previous_stage: Stage
    stage: Stage
    at: datetime
    previous_tier: str | None = None
    signal: str | None = None  # signal: the activity type the playbook marks as a signal


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
_ONE_US = timedelta(microseconds=1)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch (exact)."""
    return (at - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The time `us` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)
