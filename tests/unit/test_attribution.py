"""Attribution and the funnel breakdown: the pure cores, with hypothesis properties."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.handoff.attribution import AttributionModel, credits
from services.handoff.breakdown import GroupBy, HandoffRow, MoneyRow, StageRow, breakdown
from services.handoff.insights import InsightRow, check_insight, summarise
from services.scoring.touches import LeadTouches, add_touch, qualify
from shared.errors import Invalid
from shared.events import Touch
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PLAYBOOK = parse_playbook((REPO_ROOT / "deploy" / "playbook.example.yaml").read_text())


def doc(campaign: str, day: int, **fields: str) -> dict[str, Any]:
    return {"campaign": campaign, **fields, "at": (T0 + timedelta(days=day)).isoformat()}


def path(*touches: dict[str, Any] | None) -> dict[str, Any]:
    return dict(zip(("first", "qualifying", "last"), touches, strict=True))


touch_docs = st.one_of(
    st.none(),
    st.builds(doc, st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=3)),
)
lead_paths = st.builds(path, touch_docs, touch_docs, touch_docs)


@given(lead_paths, st.sampled_from(list(AttributionModel)))
def test_each_conversions_credit_sums_to_exactly_one(touches, model) -> None:
    shares = credits(touches, model)
    assert sum((share for _, share in shares), Fraction(0)) == 1
    assert all(share > 0 for _, share in shares)


touch_lists = st.lists(
    st.tuples(
        st.builds(Touch, campaign=st.sampled_from(["a", "b", "c", "d"])),
        st.integers(min_value=0, max_value=9),
    ),
    min_size=1,
    max_size=6,
)


@given(touch_lists, st.randoms(), st.sampled_from(["first_touch", "last_touch"]))
def test_first_and_last_touch_credit_do_not_depend_on_arrival_order(events, random, model):
    def credited(order: list[tuple[Touch, int]]) -> list[tuple[Any, Fraction]]:
        touches = LeadTouches()
        for touch, day in order:
            touches = add_touch(touches, touch, T0 + timedelta(days=day))
        return credits(qualify(touches).as_dict(), AttributionModel(model))

    shuffled = list(events)
    random.shuffle(shuffled)
    assert credited(events) == credited(shuffled)


def test_the_models_share_a_three_touch_path() -> None:
    touches = path(doc("a", 0), doc("b", 1), doc("c", 2))

    def by_campaign(model: AttributionModel) -> dict[str, Fraction]:
        return {t["campaign"]: share for t, share in credits(touches, model) if t}

    assert by_campaign(AttributionModel.FIRST_TOUCH) == {"a": 1}
    assert by_campaign(AttributionModel.LAST_TOUCH) == {"c": 1}
    assert by_campaign(AttributionModel.LINEAR) == {
        "a": Fraction(1, 3),
        "b": Fraction(1, 3),
        "c": Fraction(1, 3),
    }
    assert by_campaign(AttributionModel.POSITION_BASED) == {
        "a": Fraction(2, 5),
        "b": Fraction(1, 5),
        "c": Fraction(2, 5),
    }
    one = path(doc("a", 0), doc("a", 0), doc("a", 0))  # the same touch three times
    assert [s for _, s in credits(one, AttributionModel.POSITION_BASED)] == [1]
    assert credits(None, AttributionModel.LINEAR) == [(None, 1)]


def test_the_breakdown_counts_stages_handoffs_and_money_per_campaign() -> None:
    spring = path(doc("spring", 0, source="google"), doc("spring", 0, source="google"), None)
    mixed = path(doc("spring", 0), doc("nurture", 1), doc("nurture", 1))
    stages = [
        StageRow("became_lead", spring),
        StageRow("became_lead", mixed),
        StageRow("became_lead", None),
        StageRow("became_mql", mixed),
    ]
    handoffs = [
        HandoffRow(mixed, "emea", "hot", True, None, "opportunity", 30.0),
        HandoffRow(spring, "emea", "warm", False, "no_budget", None, 90.0),
    ]
    money = [MoneyRow(mixed, "emea", "hot", "opportunity", "EUR", Decimal("1000.00"))]
    linear = {
        g["key"]: g
        for g in breakdown(GroupBy.CAMPAIGN, AttributionModel.LINEAR, stages, handoffs, money)
    }
    assert set(linear) == {"spring", "nurture", None}
    assert linear["spring"]["leads"] == 1.5 and linear["nurture"]["leads"] == 0.5
    assert linear[None]["leads"] == 1
    assert linear["nurture"]["mqls"] == 0.5
    assert linear["spring"]["pipeline"] == {"EUR": Decimal("500.00")}
    assert linear["spring"]["rejected_by_reason"] == {"no_budget": 1}
    assert linear["spring"]["accept_rate"] == round(0.5 / 1.5, 4)
    by_rule = breakdown(GroupBy.ROUTING_RULE, AttributionModel.LINEAR, stages, handoffs, money)
    assert [(g["key"], g["leads"], g["mqls"], g["opportunities"]) for g in by_rule] == [
        ("emea", None, 2, 1)
    ]
    assert by_rule[0]["median_speed_to_lead_seconds"] == 60.0
    assert by_rule[0]["pipeline"] == {"EUR": Decimal("1000.00")}


def test_insight_tags_come_from_the_playbooks_vocabulary_and_notes_are_short() -> None:
    checked = check_insight({"objection": ["price", "price"]}, "  call in Q3 ", PLAYBOOK)
    assert (checked.tags, checked.note) == ({"objection": ["price"]}, "call in Q3")
    for tags, note, pointer in (
        ({"objection": ["bananas"]}, None, "/tags/objection/0"),
        ({"mood": ["happy"]}, None, "/tags/mood"),
        (None, "x" * (PLAYBOOK.closed_loop.note_max_chars + 1), "/note"),
    ):
        with pytest.raises(Invalid) as refused:
            check_insight(tags, note, PLAYBOOK)
        assert refused.value.errors and refused.value.errors[0]["pointer"] == pointer


def test_insights_are_counted_per_campaign_with_the_latest_notes() -> None:
    rows = [
        InsightRow(
            path(doc("spring", 0), None, None), "emea", "hot", {"objection": ["price"]}, "old", T0
        ),
        InsightRow(
            path(doc("spring", 0), None, None),
            "emea",
            "hot",
            {"objection": ["price", "timing"]},
            "new",
            T0 + timedelta(hours=1),
        ),
        InsightRow(None, "emea", "hot", {"competitor": ["pipedrive"]}, None, T0),
    ]
    groups = summarise(rows, GroupBy.CAMPAIGN, AttributionModel.FIRST_TOUCH)
    assert groups[0] == {
        "key": "spring",
        "insights": 2,
        "tags": {"objection": {"price": 2, "timing": 1}},
        "latest_notes": ["new", "old"],
    }
    assert groups[1]["key"] is None
    by_rule = summarise(rows, GroupBy.ROUTING_RULE, AttributionModel.FIRST_TOUCH)
    assert [(g["key"], g["insights"]) for g in by_rule] == [("emea", 3)]
