"""A lead's score: fit plus decayed behaviour, what each rule contributed, and the lead's state.

No I/O and no clock: the score at a time t is a function of the lead's attributes and
activities alone, so live processing, a replay and a decay timer all agree.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.scoring.core.compiled import CompiledRules, compiled_rules
from services.scoring.core.records import DAY_US, Behaviour, to_us
from services.scoring.core.tallies import tally_points
from shared.playbook import Playbook
from shared.vocabulary import Stage


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
        "_points",
        "_of",
    )

    fit: float
    behaviour: float
    total: int
    disqualified: bool
    _contributions: tuple[tuple[str, float], ...] | None
    # What a worked-out score came from (`_compiled` None: given, as read from a row). The
    # next activity reuses `_fit` when the rules, email and attributes are the same.
    _compiled: "CompiledRules | None"
    _email: str | None
    _attributes: dict[str, Any] | None
    _behaviour: Behaviour | None  # dropped once the contributions are worked out
    _at: datetime | None  # when an activity's score was worked out, if it says (at _at_us)
    _at_us: int
    _fit: float
    # Behaviour points unrounded, and the record they are of (kept when `_behaviour` is
    # dropped): the next decay timer is worked out from them (`worked_out`).
    _points: float
    _of: Behaviour | None

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
        self._points = behaviour
        self._of = None

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

    def worked_out(
        self, compiled: "CompiledRules", state: "LeadState"
    ) -> tuple[float, float] | None:
        """Fit and behaviour points unrounded, if this score was worked out by `compiled` for
        this state at its evaluated_at (as `score_at` left them), else None."""
        if (
            self._compiled is compiled
            and self._of is state.behaviour
            and self._attributes is state.attributes
            and self._email == state.email
            and self._at is not None
            and self._at is state.evaluated_at
        ):
            return self._fit, self._points
        return None

    def us_of(self, at: datetime) -> int:
        """`at` in microseconds: no arithmetic when this score was worked out at `at`."""
        return self._at_us if self._at is at else to_us(at)

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
    stage: Stage = Stage.LEAD
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


def score_at(
    compiled: "CompiledRules",
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
    for tally in behaviour.tallies.values():  # tally_points, inlined: it runs per rule per event
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
    score._points = points
    score._of = behaviour
    return score


def _parts_at(
    compiled: "CompiledRules",
    email: str | None,
    attributes: dict[str, Any],
    behaviour: Behaviour,
    at_us: int,
) -> list[tuple[str, float]]:
    """What each fit and behaviour rule gives at `at_us`, unrounded."""
    _, parts, _ = compiled.fit_of(email, attributes)
    half_life_days = compiled.half_life_days
    return parts + [
        (compiled.label(rule), tally_points(tally, at_us, half_life_days))
        for rule, tally in behaviour.tallies.items()
    ]


def evaluate(state: LeadState, playbook: Playbook, at: datetime) -> Score:
    """The lead's score at `at` (never earlier than the lead's own clock)."""
    if state.last_activity_at is not None and at < state.last_activity_at:
        at = state.last_activity_at
    return score_at(
        compiled_rules(playbook), state.email, state.attributes, state.behaviour, to_us(at)
    )
