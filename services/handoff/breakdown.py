"""Pure: the funnel broken down by source, medium or campaign (credited by an attribution
model), or by routing rule or tier.

By a touch field, each stage a person reached in the window is one conversion whose credit
goes to the lead's touches (attribution.py), so a group's figures may be fractions and the
groups add up to the whole. By routing rule or tier, every handoff routed in the window
counts whole in its own group: its MQL, how far sales took it (SQL, opportunity, customer),
acceptance, rejections, money and speed to lead; `leads` is null there (a lead is counted
before it is routed).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from fractions import Fraction
from statistics import median
from typing import Any

from services.handoff.attribution import AttributionModel, TouchDoc, credits
from services.handoff.lifecycle import CONVERSION_ORDER, ConversionStage
from services.handoff.money import MONEY_STAGES

Touches = Mapping[str, TouchDoc | None] | None
CENT = Decimal("0.01")


class GroupBy(StrEnum):
    """What the funnel is broken down by."""

    SOURCE = "source"
    MEDIUM = "medium"
    CAMPAIGN = "campaign"
    ROUTING_RULE = "routing_rule"
    TIER = "tier"


TOUCH_GROUPS = {GroupBy.SOURCE, GroupBy.MEDIUM, GroupBy.CAMPAIGN}
STAGE_OF_TRANSITION = {
    "became_lead": "leads",
    "became_mql": "mqls",
    "became_sql": "sqls",
    "became_opportunity": "opportunities",
    "became_customer": "customers",
}
STAGES_REACHED = {  # a handoff converted to X reached every stage up to X
    stage: [
        ("sqls", "opportunities", "customers")[i] for i in range(CONVERSION_ORDER.index(stage) + 1)
    ]
    for stage in CONVERSION_ORDER
}


@dataclass(frozen=True)
class StageRow:
    """A person reaching a stage in the window, with their touches then."""

    transition: str
    touches: Touches


@dataclass(frozen=True)
class HandoffRow:
    """A handoff routed in the window."""

    touches: Touches
    routing_rule: str | None
    tier: str | None
    accepted: bool
    rejected_reason: str | None
    converted_to: str | None
    speed_to_lead_s: float | None


@dataclass(frozen=True)
class MoneyRow:
    """An amount sales gave with a conversion in the window, and its handoff."""

    touches: Touches
    routing_rule: str | None
    tier: str | None
    stage: str
    currency: str
    amount: Decimal


@dataclass
class Group:
    """One row of the breakdown (`key` None: no touch, no rule or no tier)."""

    key: str | None
    stages: dict[str, Fraction] = field(default_factory=dict)
    handoffs: Fraction = Fraction(0)
    accepted: Fraction = Fraction(0)
    rejected_by_reason: dict[str, Fraction] = field(default_factory=dict)
    pipeline: dict[str, Decimal] = field(default_factory=dict)
    revenue: dict[str, Decimal] = field(default_factory=dict)
    speeds_s: list[float] = field(default_factory=list)

    def as_dict(self, by_touch: bool) -> dict[str, Any]:
        """The group as the API shows it."""

        def figure(value: Fraction) -> float:
            return round(float(value), 4)

        stages = {
            name: (
                figure(self.stages.get(name, Fraction(0))) if by_touch or name != "leads" else None
            )
            for name in STAGE_OF_TRANSITION.values()
        }
        return {
            "key": self.key,
            **stages,
            "handoffs": figure(self.handoffs),
            "accepted": figure(self.accepted),
            "accept_rate": round(float(self.accepted / self.handoffs), 4)
            if self.handoffs
            else None,
            "rejected_by_reason": {
                r: figure(n) for r, n in sorted(self.rejected_by_reason.items())
            },
            "pipeline": {
                c: a.quantize(CENT, ROUND_HALF_EVEN) for c, a in sorted(self.pipeline.items())
            },
            "revenue": {
                c: a.quantize(CENT, ROUND_HALF_EVEN) for c, a in sorted(self.revenue.items())
            },
            "median_speed_to_lead_seconds": round(median(self.speeds_s), 3)
            if self.speeds_s
            else None,
        }


def shares(
    group_by: GroupBy, model: AttributionModel, touches: Touches, rule: str | None, tier: str | None
) -> list[tuple[str | None, Fraction]]:
    if group_by == GroupBy.ROUTING_RULE:
        return [(rule, Fraction(1))]
    if group_by == GroupBy.TIER:
        return [(tier, Fraction(1))]
    out: dict[str | None, Fraction] = {}
    for touch, credit in credits(touches, model):
        key = touch.get(group_by.value) if touch else None
        out[key] = out.get(key, Fraction(0)) + credit
    return list(out.items())


def _decimal(share: Fraction) -> Decimal:
    return Decimal(share.numerator) / Decimal(share.denominator)


def breakdown(
    group_by: GroupBy,
    model: AttributionModel,
    stage_rows: Iterable[StageRow],
    handoff_rows: Iterable[HandoffRow],
    money_rows: Iterable[MoneyRow],
) -> list[dict[str, Any]]:
    """The breakdown's groups, the largest by MQLs first (then by name; no group last)."""
    groups: dict[str | None, Group] = {}

    def group(key: str | None) -> Group:
        return groups.setdefault(key, Group(key))

    by_touch = group_by in TOUCH_GROUPS
    if by_touch:
        for row in stage_rows:
            stage = STAGE_OF_TRANSITION.get(row.transition)
            if stage is None:
                continue
            for key, share in shares(group_by, model, row.touches, None, None):
                g = group(key)
                g.stages[stage] = g.stages.get(stage, Fraction(0)) + share
    for h in handoff_rows:
        for key, share in shares(group_by, model, h.touches, h.routing_rule, h.tier):
            g = group(key)
            g.handoffs += share
            if h.accepted:
                g.accepted += share
            if h.rejected_reason:
                reasons = g.rejected_by_reason
                reasons[h.rejected_reason] = reasons.get(h.rejected_reason, Fraction(0)) + share
            if h.speed_to_lead_s is not None and share:
                g.speeds_s.append(h.speed_to_lead_s)
            if not by_touch:
                reached = (
                    ["mqls", *STAGES_REACHED.get(ConversionStage(h.converted_to), [])]
                    if h.converted_to
                    else ["mqls"]
                )
                for stage in reached:
                    g.stages[stage] = g.stages.get(stage, Fraction(0)) + share
    for m in money_rows:
        figure = MONEY_STAGES[ConversionStage(m.stage)]
        for key, share in shares(group_by, model, m.touches, m.routing_rule, m.tier):
            sums = getattr(group(key), figure)
            sums[m.currency] = sums.get(m.currency, Decimal(0)) + m.amount * _decimal(share)
    ordered: Sequence[Group] = sorted(
        groups.values(),
        key=lambda g: (g.key is None, -g.stages.get("mqls", Fraction(0)), g.key or ""),
    )
    return [g.as_dict(by_touch) for g in ordered]
