"""Pure: how the board's campaign page shows the funnel's breakdown."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.handoff.board.views import Bar, bars


def figure(value: float | None) -> str:
    """A credited count: whole numbers as such, fractions to two places, a dash for none."""
    if value is None:
        return "–"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def money(sums: Mapping[str, Decimal | str]) -> str:
    """Amounts per currency, e.g. "EUR 12,000.00; USD 500.00", or a dash."""
    if not sums:
        return "–"
    return "; ".join(f"{c} {Decimal(str(a)):,.2f}" for c, a in sorted(sums.items()))


def mql_bars(groups: list[dict[str, Any]]) -> list[Bar]:
    """MQLs per group, as the page's chart."""
    return bars([(g["key"] or "(none)", g["mqls"], figure(g["mqls"])) for g in groups])
