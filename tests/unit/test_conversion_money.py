"""What a conversion is worth: the pure rules of services/handoff/money.py."""

from decimal import Decimal

import pytest

from services.handoff.money import Money, conversion_money, sums_by_currency
from shared.errors import Invalid
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
EUR = parse_playbook(EXAMPLE)
NO_DEFAULT = parse_playbook(EXAMPLE.replace("reporting_currency: EUR", "reporting_currency: null"))


def test_an_amount_takes_its_own_currency_or_the_playbooks() -> None:
    ten = Decimal("10.00")
    assert conversion_money("convert", "customer", ten, "USD", EUR) == Money(ten, "USD")
    assert conversion_money("convert", "opportunity", ten, None, EUR) == Money(ten, "EUR")
    assert conversion_money("convert", "opportunity", None, None, EUR) is None
    assert conversion_money("accept", None, None, None, NO_DEFAULT) is None


@pytest.mark.parametrize(
    ("action", "stage", "amount", "currency", "book", "pointer"),
    [
        ("convert", "sql", Decimal(1), None, EUR, "/amount"),
        ("accept", None, Decimal(1), None, EUR, "/amount"),
        ("convert", "customer", None, "EUR", EUR, "/currency"),
        ("convert", "customer", Decimal(1), None, NO_DEFAULT, "/currency"),
    ],
)
def test_misplaced_money_is_refused_naming_the_field(
    action: str, stage: str | None, amount: Decimal | None, currency: str | None, book, pointer
) -> None:
    with pytest.raises(Invalid) as refused:
        conversion_money(action, stage, amount, currency, book)
    assert refused.value.errors == [{"pointer": pointer, "detail": str(refused.value)}]


def test_sums_stay_per_stage_and_currency() -> None:
    rows = [
        ("opportunity", "EUR", Decimal("100.10")),
        ("opportunity", "USD", Decimal("5")),
        ("opportunity", "EUR", Decimal("0.90")),
        ("customer", "EUR", Decimal("70")),
    ]
    assert sums_by_currency(rows) == {
        "pipeline": {"EUR": Decimal("101.00"), "USD": Decimal("5")},
        "revenue": {"EUR": Decimal("70")},
    }
