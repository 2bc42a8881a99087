"""Closing the loop between sales and marketing: the currency money is reported in."""

from pydantic import Field

from shared.playbook.base import Section

CURRENCY_PATTERN = r"^[A-Z]{3}$"


class ClosedLoop(Section):
    """What sales reports back to marketing, and how it is counted."""

    reporting_currency: str | None = Field(
        None,
        pattern=CURRENCY_PATTERN,
        description="ISO 4217 code for conversion amounts sent without a currency; without it "
        "an amount needs its currency",
    )
