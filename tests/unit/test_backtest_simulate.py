"""The backtest core: playbooks compared on one history, and threshold calibration."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from services.backtest.compare import calibrate, compare, wilson
from services.backtest.demo import history
from services.backtest.simulate import Judgement, decode, simulate
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
END = datetime(2026, 11, 23, tzinfo=UTC)


def generated(people: int = 300, days: int = 28):
    native = TypeAdapter(NativeLeadEvent)
    raw = history(people, days, seed=5, end=END)
    return decode(native_to_cloud_event(native.validate_python(e), "api") for e in raw)


def with_threshold(threshold: int):
    return parse_playbook(EXAMPLE.replace("mql_threshold: 50", f"mql_threshold: {threshold}"))


def test_a_higher_threshold_qualifies_a_subset_of_the_leads_and_later():
    events = generated()
    current, stricter = with_threshold(50), with_threshold(70)
    result = compare(simulate(events, current), simulate(events, stricter), current, stricter, {})
    a, b = result["baseline"], result["candidate"]
    assert a["leads_qualified"] > b["leads_qualified"] > 0
    assert result["only_candidate"]["count"] == 0
    assert result["only_baseline"]["count"] == a["leads_qualified"] - b["leads_qualified"]
    sample = result["only_baseline"]["sample"][0]
    assert 50 <= sample["score"] < 70 + 100 and sample["explanation"]
    assert sum(a["mqls_per_week"].values()) == a["mqls"]
    assert sum(a["handoffs_per_team"].values()) == a["mqls"]


def test_a_converted_lead_that_a_stricter_playbook_never_qualifies_is_reported_missed():
    events = generated()
    current, stricter = with_threshold(50), with_threshold(200)
    base = simulate(events, current)
    lead = base.mqls[0]
    judged = {lead.lead_key: Judgement(lead.lead_key, lead.at, lead.score, True, None, "customer")}
    result = compare(base, simulate(events, stricter), current, stricter, judged)
    assert result["baseline"]["sales"]["converted_missed"] == []
    assert result["candidate"]["sales"]["converted_missed"] == [lead.lead_key]
    assert result["baseline"]["sales"]["accepted_share"] == 1.0


def test_the_window_reports_only_what_happened_in_it_but_scores_with_all_history():
    events = generated()
    playbook = with_threshold(50)
    whole = simulate(events, playbook)
    since = END - timedelta(days=7)
    recent = whole.since(since)
    assert 0 < len(recent.mqls) < len(whole.mqls)
    assert all(m.at >= since for m in recent.mqls)


def judged_at(scores_and_accepts: list[tuple[int, bool]]) -> dict[str, Judgement]:
    return {
        f"lead-{i}": Judgement(f"lead-{i}", END, score, accepted, None if accepted else "x", None)
        for i, (score, accepted) in enumerate(scores_and_accepts)
    }


def test_calibration_suggests_the_lowest_threshold_whose_acceptance_meets_the_goal():
    # Below 60 sales accepts 1 in 5; from 60 up, 9 in 10.
    rows = [(s, i % 5 == 0) for s in range(30, 60) for i in range(5)]
    rows += [(s, i % 10 != 0) for s in range(60, 100) for i in range(10)]
    result = calibrate(judged_at(rows), accept_goal=0.8)
    assert result["suggestion"]["mql_threshold"] == 60
    assert result["suggestion"]["confidence"] == "high"
    band = next(b for b in result["bands"] if b["low"] == 30)
    assert band["handoffs"] == 50 and band["accepted"] == 10


def test_thin_evidence_does_not_pass_the_goal():
    result = calibrate(judged_at([(80, True), (85, True)]), accept_goal=0.8)
    assert result["suggestion"] is None  # 2 of 2 accepted, but the interval reaches down to 34%


@given(st.integers(0, 200), st.integers(1, 200))
def test_the_wilson_interval_holds_the_observed_rate(successes, n):
    successes = min(successes, n)
    low, high = wilson(successes, n)
    assert 0 <= low <= successes / n <= high <= 1
