"""Pure: which touches get the credit for a conversion, under each attribution model.

A lead's touches are its first, qualifying and last touch (scoring keeps them); the same
touch twice (a lead with one campaign) counts once. Each model gives every conversion credit
that sums to exactly one (fractions, so nothing is lost to rounding): first touch and last
touch give it all to one touch; linear shares it equally; position-based gives 40% each to
the first and last touch and 20% to the touches between (half each when there are two).
A lead without touches gives its credit to no touch (None).
"""

from collections.abc import Mapping
from enum import StrEnum
from fractions import Fraction
from typing import Any

from shared.events import TOUCH_FIELDS

TouchDoc = Mapping[str, Any]


class AttributionModel(StrEnum):
    """How a conversion's credit is shared among the lead's touches."""

    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    LINEAR = "linear"
    POSITION_BASED = "position_based"


def _identity(touch: TouchDoc) -> tuple[Any, ...]:
    return (*(touch.get(f) for f in TOUCH_FIELDS), touch.get("at"))


def path(touches: Mapping[str, TouchDoc | None] | None) -> list[TouchDoc]:
    """The lead's distinct touches in order: first, qualifying, last."""
    out: list[TouchDoc] = []
    seen: set[tuple[Any, ...]] = set()
    for role in ("first", "qualifying", "last"):
        touch = (touches or {}).get(role)
        if touch and _identity(touch) not in seen:
            seen.add(_identity(touch))
            out.append(touch)
    return out


def credits(
    touches: Mapping[str, TouchDoc | None] | None, model: AttributionModel
) -> list[tuple[TouchDoc | None, Fraction]]:
    """Each touch's share of one conversion; the shares sum to one."""
    steps = path(touches)
    if not steps:
        return [(None, Fraction(1))]
    if model == AttributionModel.FIRST_TOUCH:
        return [(steps[0], Fraction(1))]
    if model == AttributionModel.LAST_TOUCH:
        return [(steps[-1], Fraction(1))]
    n = len(steps)
    if model == AttributionModel.LINEAR or n <= 2:
        return [(step, Fraction(1, n)) for step in steps]
    middle = Fraction(1, 5) / (n - 2)
    ends = Fraction(2, 5)
    return [(steps[0], ends), *((step, middle) for step in steps[1:-1]), (steps[-1], ends)]
