"""The playbook's scoring section: fit rules on attributes, behaviour rules on activities, decay.

(The pure scoring core that applies these rules is services/scoring/core/.)
"""

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import Field, model_validator

from shared.playbook.base import Section


class Condition(Section):
    """One test on a value: equals, in, a range (gte/lte), a regex, or exists."""

    equals: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    gte: float | None = None
    lte: float | None = None
    regex: str | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> "Condition":
        tests = [
            self.equals is not None,
            self.in_ is not None,
            self.gte is not None or self.lte is not None,
            self.regex is not None,
            self.exists is not None,
        ]
        if sum(tests) != 1:
            raise ValueError("give exactly one of equals, in, gte/lte, regex, exists")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return self

    def matches(self, value: Any) -> bool:
        """Whether the value passes this test (a missing value passes only exists: false)."""
        entry = _MATCHERS.get(id(self))
        if entry is None or entry[0] is not self:
            if len(_MATCHERS) >= 4096:  # playbooks come and go (tests, backtests): keep a few
                _MATCHERS.clear()
            entry = _MATCHERS[id(self)] = (self, self.matcher())
        return entry[1](value)

    def matcher(self) -> Callable[[Any], bool]:
        """This test as a function with its set and regex built once, for rules run per event."""
        if self.exists is not None:
            exists = self.exists
            return lambda value: (value not in (None, "")) == exists
        if self.equals is not None:
            target = _fold(self.equals)
            return lambda value: value is not None and _fold(value) == target
        if self.in_ is not None:
            listed = self.in_
            try:
                options = frozenset(_fold(v) for v in listed)
            except TypeError:  # an unhashable option fails only when a value is tested
                return lambda value: (
                    value is not None and _fold(value) in {_fold(v) for v in listed}
                )
            return lambda value: value is not None and _fold(value) in options
        if self.regex is not None:
            search = re.compile(self.regex).search
            return lambda value: value is not None and search(str(value)) is not None
        return partial(_in_range, self.gte, self.lte)


# Each condition's matcher by the condition's identity: sections are frozen, so the same object
# always means the same test. The entry holds the condition, so its id cannot be reused.
_MATCHERS: dict[int, tuple[Condition, Callable[[Any], bool]]] = {}


def _in_range(gte: float | None, lte: float | None, value: Any) -> bool:
    if value is None:
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return (gte is None or number >= gte) and (lte is None or number <= lte)


def _fold(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class FitRule(Condition):
    """Points for who the lead is: a condition on one attribute (email_domain is derived)."""

    name: str
    attribute: str
    points: int = 0
    disqualify: bool = Field(False, description="A match moves the lead to disqualified")


class Cap(Section):
    """At most `points` from one rule in each period of `period_days` (counted from epoch)."""

    points: int = Field(gt=0)
    period_days: float = Field(gt=0)


class BehaviourRule(Section):
    """Points each time the lead does an activity, optionally only when its properties match."""

    activity: str
    points: int
    name: str | None = None
    when: dict[str, Condition] = Field(default_factory=dict)
    cap: Cap | None = None

    @property
    def rule_name(self) -> str:
        """The name used in explanations."""
        return self.name or self.activity

    def matches(self, activity_type: str, properties: dict[str, Any]) -> bool:
        """Whether an activity earns this rule's points."""
        return activity_type == self.activity and all(
            condition.matches(properties.get(key)) for key, condition in self.when.items()
        )


class Decay(Section):
    """Behaviour points halve every `half_life_days` after the activity occurred."""

    half_life_days: float | None = Field(None, gt=0, description="None: behaviour never decays")


class Scoring(Section):
    fit: list[FitRule] = Field(default_factory=list)
    behaviour: list[BehaviourRule] = Field(default_factory=list)
    decay: Decay = Field(default_factory=Decay)

    @model_validator(mode="after")
    def _unique_names(self) -> "Scoring":
        names = [r.name for r in self.fit] + [r.rule_name for r in self.behaviour]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique (give `name:`); repeated: {repeated}")
        return self
