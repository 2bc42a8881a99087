"""Sales signals (playbook taxonomy.signals): an mql or later lead's signal activity is a
`signal` transition carrying the activity's type and time; nothing else is."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.core import LeadState, apply_activity
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import PlaybookError, load_playbook, parse_playbook
from shared.settings import REPO_ROOT
from shared.vocabulary import LifecycleTransition, Stage

SIGNAL = LifecycleTransition.SIGNAL
EXAMPLE = REPO_ROOT / "deploy" / "playbook.example.yaml"
PLAYBOOK = load_playbook(EXAMPLE)
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KINDS = ["demo_request", "form_submit", "pricing_page_view", "email_open", "page_view"]
KEY = "email:ana@acme.example"


def activity(kind, minutes=0, email="ana@acme.example"):
    return LeadActivityData(
        identity=Identity(email=email),
        activity=Activity(type=kind, occurred_at=T0 + timedelta(minutes=minutes)),
    )


def signals_of(steps, state=None, playbook=PLAYBOOK):
    """Apply (kind, minutes) steps in this order; the state and the signals that fired."""
    state, fired = state or LeadState(lead_key=KEY), []
    for i, (kind, minutes) in enumerate(steps):
        state, transitions = apply_activity(state, activity(kind, minutes), f"e{i}", playbook)
        fired += [(t.signal, t.at) for t in transitions if t.name == SIGNAL]
    return state, fired


def an_mql():
    state, fired = signals_of([("form_submit", 0), ("form_submit", 1), ("form_submit", 2)])
    assert (state.stage, fired) == (Stage.MQL, [])
    return state


def test_the_example_playbook_marks_demo_requests_and_pricing_views():
    assert PLAYBOOK.taxonomy.signals == ["demo_request", "pricing_page_view"]


def test_a_signal_by_an_mql_fires_with_its_type_and_time_and_keeps_the_stage():
    state, transitions = apply_activity(an_mql(), activity("demo_request", 10), "d", PLAYBOOK)
    signal = [t for t in transitions if t.name == SIGNAL]
    assert len(signal) == 1
    assert signal[0].signal == "demo_request"
    assert signal[0].at == T0 + timedelta(minutes=10)
    assert signal[0].previous_stage == signal[0].stage == state.stage == Stage.MQL


def test_an_activity_the_playbook_does_not_mark_is_no_signal():
    _, fired = signals_of([("form_submit", 10), ("email_open", 11)], an_mql())
    assert fired == []


def test_the_activity_that_qualifies_a_lead_is_its_mql_not_a_signal():
    state, fired = signals_of([("form_submit", 0), ("demo_request", 1)])
    assert state.stage == Stage.MQL
    assert fired == []
    _, fired = signals_of([("pricing_page_view", 2)], state)
    assert fired == [("pricing_page_view", T0 + timedelta(minutes=2))]


@pytest.mark.parametrize("stage", list(Stage))
def test_signals_fire_for_mql_sql_and_opportunity_leads_only(stage):
    state = replace(an_mql(), stage=stage)
    _, transitions = apply_activity(state, activity("demo_request", 10), "d", PLAYBOOK)
    fired = any(t.name == SIGNAL for t in transitions)
    assert fired == (stage in {Stage.MQL, Stage.SQL, Stage.OPPORTUNITY})


def test_a_signal_that_disqualifies_the_lead_does_not_reach_sales():
    state = an_mql()
    rival = activity("demo_request", 10, email="ana@rival.example")
    after, transitions = apply_activity(state, rival, "d", PLAYBOOK)
    assert after.stage == Stage.DISQUALIFIED
    assert SIGNAL not in [t.name for t in transitions]


def test_a_playbook_without_signals_fires_none():
    text = EXAMPLE.read_text().replace("signals: [demo_request, pricing_page_view]", "signals: []")
    playbook = parse_playbook(text)
    state = an_mql()
    _, fired = signals_of([("demo_request", 10), ("pricing_page_view", 11)], state, playbook)
    assert fired == []


def test_a_signal_no_behaviour_rule_scores_is_refused_by_playbook_check():
    text = EXAMPLE.read_text().replace(
        "signals: [demo_request, pricing_page_view]", "signals: [demo_requst]"
    )
    with pytest.raises(PlaybookError, match="demo_requst"):
        parse_playbook(text)


steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 60 * 24 * 90)), max_size=20)


@given(steps, st.randoms())
def test_an_mqls_signals_do_not_depend_on_arrival_order(items, rng):
    start = an_mql()
    _, fired = signals_of(items, start)
    shuffled = list(items)
    rng.shuffle(shuffled)
    _, fired_shuffled = signals_of(shuffled, start)
    expected = Counter(
        (kind, T0 + timedelta(minutes=minutes))
        for kind, minutes in items
        if kind in PLAYBOOK.taxonomy.signals
    )
    assert Counter(fired) == Counter(fired_shuffled) == expected


@given(steps, st.randoms())
def test_in_any_order_exactly_the_signals_after_qualifying_fire(items, rng):
    shuffled = list(items)
    rng.shuffle(shuffled)
    state, fired = LeadState(lead_key=KEY), []
    expected = []
    for i, (kind, minutes) in enumerate(shuffled):
        was_mql = state.stage == Stage.MQL
        state, transitions = apply_activity(state, activity(kind, minutes), f"e{i}", PLAYBOOK)
        fired += [(t.signal, t.at) for t in transitions if t.name == SIGNAL]
        if was_mql and kind in PLAYBOOK.taxonomy.signals:
            expected.append((kind, T0 + timedelta(minutes=minutes)))
    assert fired == expected
