"""Calibrating the fit floor (`min_fit`): sales' verdicts by fit band and the suggested floor."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.backtest.compare import calibrate
from services.backtest.fit_floor import calibrate_fit, fit_at_handoff, fit_bands, suggest_min_fit
from services.backtest.report import write_calibration
from services.backtest.simulate import HistoryEvent, Judgement
from shared.events import ExplanationLine, HandoffData

AT = datetime(2026, 11, 23, tzinfo=UTC)


def handoff_event(kind: str, lead: str, explanation: list[tuple[str, float]]) -> HistoryEvent:
    data = HandoffData(
        handoff_id=f"h-{lead}",
        status="assigned",
        lead_key=lead,
        rep_id="rep-ana",
        score=60,
        stage="mql",
        routing_reason="rule",
        explanation=[ExplanationLine(rule=r, points=p) for r, p in explanation],
    )
    return HistoryEvent(AT, f"{kind}-{lead}", lead, None, kind, data, (lead,))


def test_the_fit_at_handoff_is_the_sum_of_the_first_handoffs_fit_lines():
    history = [
        handoff_event(
            "assigned",
            "ann",
            [("behaviour:demo_request", 40), ("fit:large_company", 20), ("fit:free_mail", -10)],
        ),
        handoff_event("assigned", "ann", [("fit:large_company", 20), ("fit:senior_title", 15)]),
        handoff_event("accepted", "bob", [("fit:large_company", 20)]),
        handoff_event("assigned", "cy", [("behaviour:demo_request", 40)]),
    ]
    assert fit_at_handoff(history) == {"ann": 10, "cy": 0}


def judged_with_fit(rows: list[tuple[float, bool, bool]]):
    """(fit, accepted, converted) per handoff: the verdicts and the fits by lead key."""
    judged, fits = {}, {}
    for i, (fit, accepted, converted) in enumerate(rows):
        key = f"lead-{i}"
        judged[key] = Judgement(
            key, AT, 60, accepted, None if accepted else "not_a_fit", "sql" if converted else None
        )
        fits[key] = fit
    return judged, fits


def test_the_floor_drops_the_low_fit_bands_sales_turns_down():
    # No fit (0-9): 1 in 10 accepted, one converted; a free-mail fit (-10): none;
    # from 10 up: 8 in 10.
    rows = [(-10.0, False, False)] * 40
    rows += [(0.0, i % 10 == 0, i == 0) for i in range(60)]
    rows += [(20.0, i % 10 < 8, i % 10 == 0) for i in range(100)]
    judged, fits = judged_with_fit(rows)
    result = calibrate_fit(judged, fits, accept_goal=0.6, current_min_fit=None)
    assert [(b["low"], b["handoffs"], b["accepted"]) for b in result["bands"]] == [
        (-10, 40, 0),
        (0, 60, 6),
        (20, 100, 80),
    ]
    s = result["suggestion"]
    assert s["min_fit"] == 10  # the top of the last band dropped: 10-19 holds no evidence
    assert (s["handoffs_dropped"], s["converted_dropped"], s["handoffs_kept"]) == (100, 1, 100)
    assert s["acceptance_dropped"] == 0.06 and s["acceptance_kept"] == 0.8
    assert s["confidence"] == "high"


def test_thin_evidence_drops_no_band():
    # Two rejected no-fit handoffs: the interval of 0 in 2 still reaches 66%.
    judged, fits = judged_with_fit([(0.0, False, False)] * 2 + [(20.0, True, False)] * 50)
    assert calibrate_fit(judged, fits, accept_goal=0.6)["suggestion"]["min_fit"] is None


def test_a_poor_band_above_a_good_one_is_not_cut():
    rows = [(0.0, True, False)] * 50 + [(10.0, False, False)] * 50 + [(30.0, True, False)] * 50
    judged, fits = judged_with_fit(rows)
    s = calibrate_fit(judged, fits, accept_goal=0.6)["suggestion"]
    assert s["min_fit"] is None and "lowest fit band is not clearly below" in s["why"]


def test_no_floor_when_every_band_is_below_the_goal():
    judged, fits = judged_with_fit([(0.0, False, False)] * 50 + [(20.0, False, False)] * 50)
    s = calibrate_fit(judged, fits, accept_goal=0.6)["suggestion"]
    assert s["min_fit"] is None and "cannot reach it" in s["why"]


@given(
    st.lists(st.tuples(st.integers(-20, 60), st.booleans(), st.booleans()), max_size=120),
    st.floats(0.1, 0.9),
)
def test_a_suggested_floor_drops_only_bands_clearly_below_the_goal(rows, goal):
    judged, fits = judged_with_fit([(float(f), a, c) for f, a, c in rows])
    bands = fit_bands(judged, fits)
    s = suggest_min_fit(judged, fits, bands, goal)
    if s["min_fit"] is None:
        return
    below = [b for b in bands if b["low"] < s["min_fit"]]
    assert below and all(b["acceptance_95"][1] < goal for b in below)
    assert s["handoffs_dropped"] == sum(b["handoffs"] for b in below)
    assert s["handoffs_kept"] + s["handoffs_dropped"] == len(rows)


def test_the_report_explains_the_floor_in_markdown_and_json(tmp_path):
    rows = [(0.0, i % 10 == 0, i == 0) for i in range(60)]
    rows += [(20.0, i % 10 < 8, i % 10 == 0) for i in range(100)]
    judged, fits = judged_with_fit(rows)
    result = calibrate(judged, accept_goal=0.6)
    result["fit"] = calibrate_fit(judged, fits, accept_goal=0.6, current_min_fit=None)
    path = write_calibration(result, tmp_path)
    text = path.read_text()
    assert "## Fit floor (`taxonomy.qualification.min_fit`)" in text
    assert "| 0 to 9 | 60 | 6 | 10% " in text
    assert "min_fit **10**" in text and "1 of them converted" in text
    assert '"min_fit": 10' in (tmp_path / "calibration.json").read_text()
