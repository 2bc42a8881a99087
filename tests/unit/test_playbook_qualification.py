"""The MQL definition on fit and engagement (issue 24, item 5): pure, and the scoring core's."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.core import LeadState, apply_activity
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import load_playbook
from shared.playbook.qualification import Qualification, qualifies
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
points = st.floats(-100, 200, allow_nan=False)
floors = st.one_of(st.none(), st.floats(-50, 100, allow_nan=False))


@given(fit=points, behaviour=points, threshold=st.integers(0, 150), min_fit=floors, min_b=floors)
def test_an_mql_needs_the_total_and_each_floor_the_playbook_sets(
    fit, behaviour, threshold, min_fit, min_b
):
    rule = Qualification(min_fit=min_fit, min_behaviour=min_b)
    total = fit + behaviour
    verdict = qualifies(total, fit, behaviour, threshold, rule)
    assert verdict == (
        total >= threshold
        and (min_fit is None or fit >= min_fit)
        and (min_b is None or behaviour >= min_b)
    )
    # Without floors the definition is the total alone, as before.
    assert qualifies(total, fit, behaviour, threshold, Qualification()) == (total >= threshold)


def lead_after(company_size: int | None, activities: list[str], book=PLAYBOOK) -> LeadState:
    state = LeadState(lead_key="email:p@x.example")
    for i, kind in enumerate(activities):
        event = LeadActivityData(
            identity=Identity(email="p@x.example"),
            attributes={"company_size": company_size} if company_size else {},
            activity=Activity(type=kind, occurred_at=AT, properties={}),
        )
        state, _ = apply_activity(state, event, f"e{i}", book)
    return state


def with_rule(rule: Qualification):
    taxonomy = PLAYBOOK.taxonomy.model_copy(update={"qualification": rule})
    return PLAYBOOK.model_copy(update={"taxonomy": taxonomy})


def test_no_fit_at_all_no_longer_qualifies_on_behaviour_alone():
    """The issue's case: a demo request and a pricing view from an unknown company reach 50."""
    unknown = ["demo_request", "pricing_page_view"]
    assert lead_after(None, unknown).stage == "mql"  # the total alone, as before
    strict = with_rule(Qualification(min_fit=10))
    held = lead_after(None, unknown, strict)
    assert (held.score.total, held.score.fit, held.stage) == (50, 0, "lead")
    fitting = lead_after(300, ["demo_request", "form_submit"], strict)
    assert fitting.score.fit >= 10 and fitting.stage == "mql"
