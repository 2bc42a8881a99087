"""A playbook's scoring rules compiled once: behaviour rules by activity type, fit tests, tiers.

Compiled rules are kept per playbook object (playbooks are frozen), so live scoring, a replay
and every playbook of a backtest build them once and share what fit and tiers they work out.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.scoring.core.records import DAY_US
from shared.playbook import Playbook
from shared.playbook.scoring_rules import Scoring
from shared.playbook.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class CapRule:
    """A cap in the units the core counts in."""

    points: int
    period_s: float  # as `_period` divides: the same float arithmetic as the raw definition
    period_us: float


@dataclass(frozen=True, slots=True)
class _BehaviourRule:
    name: str
    points: int
    conditions: tuple[tuple[str, Callable[[Any], bool]], ...]
    cap: CapRule | None

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


class CompiledRules:
    """A playbook's scoring rules prepared once: behaviour rules by activity type, tests built."""

    def __init__(self, scoring: Scoring, taxonomy: Taxonomy) -> None:
        self.half_life_days = scoring.decay.half_life_days
        by_activity: dict[str, list[_BehaviourRule]] = {}
        self.caps: dict[str, CapRule] = {}
        for rule in scoring.behaviour:
            cap = rule.cap
            compiled = _BehaviourRule(
                rule.rule_name,
                rule.points,
                tuple((key, condition.matcher()) for key, condition in rule.when.items()),
                CapRule(cap.points, cap.period_days * 86400, cap.period_days * DAY_US)
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
        self.signals = frozenset(taxonomy.signals)
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


COMPILED_BY_PLAYBOOK: dict[int, tuple[Playbook, CompiledRules]] = {}


def compiled_rules(playbook: Playbook) -> CompiledRules:
    """The playbook's rules prepared for scoring (built on first use)."""
    # By the playbook object: playbooks are frozen, so the same object always holds the same
    # rules, and a changed copy is another object. The entry holds the playbook itself, so its
    # id cannot be reused while the entry exists.
    entry = COMPILED_BY_PLAYBOOK.get(id(playbook))
    if entry is None or entry[0] is not playbook:
        if len(COMPILED_BY_PLAYBOOK) >= 32:  # tests and backtests make many playbooks; keep a few
            COMPILED_BY_PLAYBOOK.clear()
        entry = COMPILED_BY_PLAYBOOK[id(playbook)] = (
            playbook,
            CompiledRules(playbook.scoring, playbook.taxonomy),
        )
    return entry[1]


def fit_score(
    email: str | None, attributes: dict[str, Any], playbook: Playbook
) -> tuple[float, list[tuple[str, float]], bool]:
    """Points for who the lead is, what gave them, and whether a rule disqualifies the lead."""
    total, parts, disqualified = compiled_rules(playbook).fit_of(email, attributes)
    return total, list(parts), disqualified
