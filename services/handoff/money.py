"""Pure: what a conversion is worth. An amount goes with a conversion to opportunity (pipeline)
or customer (revenue), in its own currency or the playbook's reporting currency; sums are kept
per currency (nothing is converted between currencies)."""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.handoff.lifecycle import ConversionStage, FeedbackAction, InvalidFeedback
from shared.playbook import Playbook

CENT = Decimal("0.01")
# The stage a conversion amount is counted under in the funnel.
MONEY_STAGES = {ConversionStage.OPPORTUNITY: "pipeline", ConversionStage.CUSTOMER: "revenue"}


@dataclass(frozen=True)
class Money:
    """An amount in one currency (ISO 4217)."""

    amount: Decimal
    currency: str


def conversion_money(
    action: str,
    converted_to: str | None,
    amount: Decimal | None,
    currency: str | None,
    playbook: Playbook,
) -> Money | None:
    """The amount a piece of feedback carries, or None; InvalidFeedback when it cannot carry one."""
    if amount is None:
        if currency is not None:
            raise InvalidFeedback("currency goes with an amount", pointer="/currency")
        return None
    if action != FeedbackAction.CONVERT or converted_to not in set(MONEY_STAGES):
        raise InvalidFeedback(
            "amount is only taken when converting to opportunity or customer", pointer="/amount"
        )
    code = currency or playbook.closed_loop.reporting_currency
    if code is None:
        raise InvalidFeedback(
            "currency is required: the playbook sets no closed_loop.reporting_currency",
            pointer="/currency",
        )
    return Money(amount.quantize(CENT), code)  # as NUMERIC(18, 2) keeps it


def money_columns(stage: str, money: Money) -> dict[str, object]:
    """The handoff columns that keep the amount given at `stage` (opportunity or customer)."""
    return {f"{stage}_amount": money.amount, f"{stage}_currency": money.currency}


def sums_by_currency(rows: Iterable[tuple[str, str, Decimal]]) -> dict[str, dict[str, Decimal]]:
    """(stage, currency, amount) rows as {"pipeline": {currency: sum}, "revenue": {...}}."""
    sums: dict[str, dict[str, Decimal]] = {"pipeline": {}, "revenue": {}}
    for stage, currency, amount in rows:
        figure = sums[MONEY_STAGES[ConversionStage(stage)]]
        figure[currency] = figure.get(currency, Decimal(0)) + amount
    return sums
