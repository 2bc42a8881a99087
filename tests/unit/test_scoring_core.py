import math
from copy import deepcopy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.scoring.codec import decode_behaviour, encode_behaviour, pack
from services.scoring.core import (
    LIVE_PERIODS,
    RECENT_HITS,
    SETTLED_BELOW_POINTS,
    Hit,
    LeadState,
    activity_hits,
    all_periods,
    apply_activity,
    apply_sales_outcome,
    behaviour_score,
    earns_points,
    effective_time,
    evaluate,
    fit_score,
    merge,
    next_score_change,
    retier,
)
from services.scoring.core.compiled import compiled_rules
from shared import jsoncodec
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import load_playbook
from shared.playbook.scoring_rules import FitRule
from shared.settings import REPO_ROOT
from shared.vocabulary import LifecycleTransition

BECAME_LEAD = LifecycleTransition.BECAME_LEAD
BECAME_MQL = LifecycleTransition.BECAME_MQL
BELOW_THRESHOLD = LifecycleTransition.SCORE_BELOW_THRESHOLD
DISQUALIFIED = LifecycleTransition.DISQUALIFIED
TIER_CHANGED = LifecycleTransition.TIER_CHANGED
SIGNAL = LifecycleTransition.SIGNAL
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KINDS = [
    "demo_request",
    "form_submit",
    "pricing_page_view",
    "email_open",
    "page_view",
    "email_click",
    "unsubscribe",
    "podcast_listen",
]


def activity(kind, minutes=0, email="ana@acme.example", attributes=None, properties=None):
    return LeadActivityData(
        identity=Identity(email=email),
        attributes=attributes or {},
        activity=Activity(
            type=kind, occurred_at=T0 + timedelta(minutes=minutes), properties=properties or {}
        ),
    )


def fold(steps, state=None):
    """Apply (kind, minutes) steps; returns the state and the transition names."""
    state, names = state or LeadState(lead_key="email:ana@acme.example"), []
    for i, (kind, minutes) in enumerate(steps):
        state, transitions = apply_activity(state, activity(kind, minutes), f"e{i}", PLAYBOOK)
        names += [t.name for t in transitions]
    return state, names


def test_demo_request_and_form_make_a_hot_mql_once():
    state, transitions = fold([("demo_request", 0), ("form_submit", 1), ("demo_request", 2)])
    assert state.score.total == 100
    assert (state.stage, state.tier) == ("mql", "hot")
    # cold->warm->hot; the second demo request comes from an MQL: a sales signal
    assert transitions == [BECAME_LEAD, BECAME_MQL, TIER_CHANGED, TIER_CHANGED, SIGNAL]
    assert state.explanation()[0] == {"rule": "behaviour:demo_request", "points": 80.0}


def test_fit_counts_with_behaviour_and_explains_itself():
    state, _ = apply_activity(
        LeadState(lead_key="k"),
        activity(
            "page_view",
            attributes={"company_size": 500, "job_title": "VP Sales"},
            email="vp@gmail.com",
        ),
        "e1",
        PLAYBOOK,
    )
    assert state.score.fit == 20 + 15 - 10
    assert state.score.total == 26
    assert {"rule": "fit:free_mail", "points": -10.0} in state.explanation()


def test_a_competitor_is_disqualified_and_never_becomes_an_mql():
    state, names = LeadState(lead_key="k"), []
    for i, kind in enumerate(["demo_request", "form_submit"]):
        state, transitions = apply_activity(
            state, activity(kind, i, email="x@rival.example"), f"e{i}", PLAYBOOK
        )
        names += [t.name for t in transitions]
    assert state.stage == "disqualified"
    assert names == [BECAME_LEAD, DISQUALIFIED]


def test_behaviour_halves_every_half_life_after_the_activity():
    state, _ = fold([("demo_request", 0)])
    later = evaluate(state, PLAYBOOK, T0 + timedelta(days=30))
    assert later.behaviour == pytest.approx(20.0)
    assert evaluate(state, PLAYBOOK, T0 + timedelta(days=60)).behaviour == pytest.approx(10.0)


def test_caps_limit_one_rule_per_period():
    state, _ = fold([("email_open", m) for m in range(10)])  # 10 x 2 points, cap 10 per 30 days
    assert state.score.behaviour == pytest.approx(10, abs=0.01)


def test_pricing_page_hits_match_their_condition():
    state, _ = apply_activity(
        LeadState(lead_key="k"),
        activity("page_view", properties={"path": "/pricing/team"}),
        "e",
        PLAYBOOK,
    )
    assert dict(state.score.contributions) == {
        "behaviour:pricing_page_hit": 9.0,
        "behaviour:page_view": 1.0,
    }


def test_decay_timer_fires_when_the_tier_changes_and_cools_the_lead():
    state, _ = fold([("demo_request", 0), ("form_submit", 1), ("pricing_page_view", 2)])
    assert (state.tier, state.score.total) == ("warm", 70)
    due = next_score_change(state, PLAYBOOK)
    assert due is not None
    before, _ = retier(state, PLAYBOOK, due - timedelta(seconds=2))
    after, transitions = retier(state, PLAYBOOK, due)
    assert before.tier == "warm"
    assert after.tier == "cold" and after.stage == "mql"
    assert [t.name for t in transitions] == [BELOW_THRESHOLD, TIER_CHANGED]


def test_sales_outcomes_move_the_stage_and_a_recycled_lead_requalifies_from_below():
    state, _ = fold([("demo_request", 0), ("form_submit", 1)])  # 60: an MQL
    state, transitions = apply_sales_outcome(
        state, "recycled", None, T0 + timedelta(hours=1), PLAYBOOK
    )
    assert (state.stage, [t.name for t in transitions]) == ("recycled", ["recycled"])
    # Still at 70: more activity does not bounce the lead straight back to sales.
    state, names = fold([("pricing_page_view", 120)], state)
    assert (state.stage, names) == ("recycled", [])
    # A month later the score has halved (35); a demo request lifts it past 50 again.
    state, names = fold([("demo_request", 60 * 24 * 30)], state)
    assert (state.stage, names, state.score.total) == ("mql", [BECAME_MQL], 75)
    state, transitions = apply_sales_outcome(state, "converted", "opportunity", T0, PLAYBOOK)
    assert (state.stage, transitions[0].name) == ("opportunity", "became_opportunity")


def test_activity_from_before_the_recycle_never_requalifies():
    state, _ = fold([("email_open", 0)])
    state, _ = apply_sales_outcome(state, "recycled", None, T0 + timedelta(days=1), PLAYBOOK)
    state, names = fold([("demo_request", 60), ("form_submit", 61)], state)  # late arrivals
    assert (state.stage, state.score.total) == ("recycled", 62)
    assert BECAME_MQL not in names


def test_a_recycle_read_after_later_activity_gives_the_same_stage():
    """The handoffs and lead-events topics are read side by side; event time decides."""
    base, _ = fold([("email_open", 0)])
    recycle_at = T0 + timedelta(hours=1)
    later = [("demo_request", 120), ("form_submit", 121)]
    in_order, _ = apply_sales_outcome(base, "recycled", None, recycle_at, PLAYBOOK)
    in_order, names = fold(later, in_order)
    late, _ = fold(later, base)
    late, transitions = apply_sales_outcome(late, "recycled", None, recycle_at, PLAYBOOK)
    assert in_order.stage == late.stage == "mql"
    assert [t.name for t in transitions] == ["recycled", BECAME_MQL]
    assert transitions[1].at == T0 + timedelta(minutes=121)


def test_merge_keeps_every_activity_once_and_the_furthest_stage():
    anon, _ = fold(
        [("pricing_page_view", 0), ("page_view", 1)], LeadState(lead_key="segment_anonymous:a")
    )
    known, _ = fold([("demo_request", 2)], LeadState(lead_key="email:ana@acme.example"))
    merged = merge(known, anon, PLAYBOOK)
    assert merged.lead_key == "email:ana@acme.example"
    assert merged.events_count == 3
    assert merged.score.total == evaluate(merged, PLAYBOOK, T0 + timedelta(minutes=2)).total
    assert merge(known, known, PLAYBOOK) == known  # merging twice changes nothing
    assert merge(merged, anon, PLAYBOOK) == merged


steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 60 * 24 * 90)), max_size=25)


@given(steps)
def test_total_is_fit_plus_behaviour_and_the_explanation_adds_up(items):
    state, names = fold(items)
    assert abs(state.score.total - (state.score.fit + state.score.behaviour)) <= 0.51
    assert abs(
        sum(p for _, p in state.score.contributions) - (state.score.fit + state.score.behaviour)
    ) <= 0.01 * (len(state.score.contributions) + 1)
    assert names.count(BECAME_MQL) <= 1


@given(steps, st.randoms())
def test_arrival_order_does_not_change_the_score_at_a_given_time(items, rng):
    at = T0 + timedelta(days=100)
    state, _ = fold(items)
    shuffled = list(enumerate(items))
    rng.shuffle(shuffled)
    other = LeadState(lead_key="email:ana@acme.example")
    for i, (kind, minutes) in shuffled:
        other, _ = apply_activity(other, activity(kind, minutes), f"e{i}", PLAYBOOK)
    assert evaluate(state, PLAYBOOK, at) == evaluate(other, PLAYBOOK, at)


@given(steps, st.integers(0, 400), st.integers(0, 400))
def test_positive_behaviour_only_decays_as_time_passes(items, a_days, b_days):
    positive = [(k, m) for k, m in items if k != "unsubscribe"]
    state, _ = fold(positive)
    base = T0 + timedelta(days=91)
    early, late = sorted((a_days, b_days))
    first = evaluate(state, PLAYBOOK, base + timedelta(days=early)).behaviour
    second = evaluate(state, PLAYBOOK, base + timedelta(days=late)).behaviour
    assert second <= first + 1e-9


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 60 * 24 * 60)), max_size=40))
def test_capped_rules_never_award_more_than_their_cap_in_a_period(hits):
    rule = next(r for r in PLAYBOOK.scoring.behaviour if r.cap)
    cap = rule.cap
    stored = tuple(
        Hit(rule.rule_name, p, T0 + timedelta(minutes=m), f"e{i}") for i, (p, m) in enumerate(hits)
    )
    total, _ = behaviour_score(
        stored,
        PLAYBOOK.model_copy(
            update={
                "scoring": PLAYBOOK.scoring.model_copy(
                    update={
                        "decay": PLAYBOOK.scoring.decay.model_copy(update={"half_life_days": None})
                    }
                )
            }
        ),
        T0 + timedelta(days=61),
    )
    periods = {
        int((T0 + timedelta(minutes=m)).timestamp() // (cap.period_days * 86400)) for _, m in hits
    }
    assert total <= cap.points * len(periods)


@given(steps, st.lists(st.none() | st.integers(0, 60 * 24 * 60), max_size=25))
def test_decay_timers_firing_in_between_do_not_change_stages_or_scores(items, delays):
    """Live processing fires timers at wall-clock times a replay never sees; nothing differs.

    A timer may fire after the lead's newest activity but before an older one arrives late.
    """
    plain, plain_names = fold(items)
    timed = LeadState(lead_key="email:ana@acme.example")
    timed_names = []
    for i, (kind, minutes) in enumerate(items):
        timed, transitions = apply_activity(timed, activity(kind, minutes), f"e{i}", PLAYBOOK)
        timed_names += [t.name for t in transitions if t.name != TIER_CHANGED]
        if i < len(delays) and delays[i] is not None:
            wall = timed.last_activity_at + timedelta(minutes=delays[i])
            timed, transitions = retier(timed, PLAYBOOK, wall)
            assert all(t.name in (TIER_CHANGED, BELOW_THRESHOLD) for t in transitions)
    at = T0 + timedelta(days=365)
    assert timed.stage == plain.stage
    assert evaluate(timed, PLAYBOOK, at) == evaluate(plain, PLAYBOOK, at)
    assert [n for n in timed_names if n != BELOW_THRESHOLD] == [
        n for n in plain_names if n not in (TIER_CHANGED, BELOW_THRESHOLD)
    ]


@given(steps, steps)
def test_merging_is_symmetric_and_idempotent(first, second):
    a, _ = fold(first, LeadState(lead_key="email:ana@acme.example"))
    b = LeadState(lead_key="segment_anonymous:x")
    for i, (kind, minutes) in enumerate(second):
        b, _ = apply_activity(b, activity(kind, minutes), f"other{i}", PLAYBOOK)
    ab, ba = merge(a, b, PLAYBOOK), merge(b, a, PLAYBOOK)
    at = T0 + timedelta(days=120)
    assert ab.behaviour == ba.behaviour
    assert (ab.stage, ab.events_count) == (ba.stage, ba.events_count)
    assert evaluate(ab, PLAYBOOK, at) == evaluate(ba, PLAYBOOK, at)
    assert evaluate(merge(ab, b, PLAYBOOK), PLAYBOOK, at) == evaluate(ab, PLAYBOOK, at)


@given(steps, st.integers(0, 60 * 24 * 90), st.randoms())
def test_a_recycle_gives_the_same_stage_wherever_it_is_read_among_later_activity(
    items, recycle_minute, rng
):
    """Activities keep their order; only where the recycle is read among them moves."""
    items = sorted(items, key=lambda km: km[1])
    recycle_at = T0 + timedelta(minutes=recycle_minute)
    before = [km for km in items if km[1] < recycle_minute]
    after = [km for km in items if km[1] >= recycle_minute]
    base, _ = fold(before)
    if base.stage != "mql":
        return  # sales only ever recycles a lead it was handed
    split = rng.randint(0, len(after))
    state = base
    for i, (kind, minutes) in enumerate(after[:split]):
        state, _ = apply_activity(state, activity(kind, minutes), f"a{i}", PLAYBOOK)
    state, _ = apply_sales_outcome(state, "recycled", None, recycle_at, PLAYBOOK)
    for i, (kind, minutes) in enumerate(after[split:], start=split):
        state, _ = apply_activity(state, activity(kind, minutes), f"a{i}", PLAYBOOK)
    in_order, _ = apply_sales_outcome(base, "recycled", None, recycle_at, PLAYBOOK)
    for i, (kind, minutes) in enumerate(after):
        in_order, _ = apply_activity(in_order, activity(kind, minutes), f"a{i}", PLAYBOOK)
    assert state.stage == in_order.stage


def raw_hits(items):
    """Every award the steps earn, for scoring them from scratch."""
    return [
        hit
        for i, (kind, minutes) in enumerate(items)
        for hit in activity_hits(
            activity(kind, minutes), f"e{i}", PLAYBOOK, T0 + timedelta(minutes=minutes)
        )
    ]


@given(steps, st.randoms(), st.integers(0, 400))
def test_incremental_tallies_equal_scoring_every_award_from_scratch(items, rng, days_after):
    """Caps in event-time order and late events: the running tallies give the same points."""
    shuffled = list(enumerate(items))
    rng.shuffle(shuffled)
    state = LeadState(lead_key="email:ana@acme.example")
    for i, (kind, minutes) in shuffled:
        state, _ = apply_activity(state, activity(kind, minutes), f"e{i}", PLAYBOOK)
    if state.last_activity_at is None:
        return
    at = state.last_activity_at + timedelta(days=days_after)
    scratch, scratch_parts = behaviour_score(raw_hits(items), PLAYBOOK, at)
    score = evaluate(state, PLAYBOOK, at)
    assert score.behaviour == pytest.approx(round(scratch, 2), abs=0.011)
    assert dict(score.contributions).keys() >= {r for r, _ in scratch_parts}


@settings(max_examples=30)
@given(steps, st.integers(0, 60 * 24 * 90))
def test_a_late_recycle_sees_the_activity_after_it_as_scoring_from_scratch_does(items, since):
    """The recent awards answer "did later activity requalify the lead" as all awards would."""
    from services.scoring.core.stages import _requalified_after

    state, _ = fold(items)
    recycle_at = T0 + timedelta(minutes=since)
    threshold = PLAYBOOK.taxonomy.mql_threshold
    hits = raw_hits(items)
    expected = None
    for at, event_id in sorted({(h.at, h.event_id) for h in hits if h.at >= recycle_at}):
        earlier = [h for h in hits if (h.at, h.event_id) < (at, event_id)]
        with_it = [h for h in hits if (h.at, h.event_id) <= (at, event_id)]
        before = round(behaviour_score(earlier, PLAYBOOK, at)[0])
        after = round(behaviour_score(with_it, PLAYBOOK, at)[0])
        if before < threshold <= after:
            expected = at
            break
    assert _requalified_after(state, recycle_at, PLAYBOOK) == expected


def test_a_long_history_keeps_the_lead_record_bounded_and_the_score_exact():
    """10,000 activities over five years: the record stays small, the score matches."""
    kinds = ["page_view", "email_open", "pricing_page_view", "demo_request", "email_click"]
    items = [(kinds[i % 5], (i * 263) % (60 * 24 * 365 * 5)) for i in range(10_000)]
    state, _ = fold(items)
    behaviour = state.behaviour
    assert len(behaviour.recent) == RECENT_HITS
    open_periods = [p for t in behaviour.tallies.values() for p in all_periods(t)]
    open_awards = sum(len(awards) for _, awards in open_periods)
    # Only cap periods whose cap is still worth SETTLED_BELOW_POINTS stay open, each holding
    # at most the awards that fill its cap: a bound set by the playbook, not by the history.
    half_life = PLAYBOOK.scoring.decay.half_life_days
    bound = 0
    for rule in PLAYBOOK.scoring.behaviour:
        if rule.cap:
            horizon_days = half_life * math.log2(rule.cap.points / SETTLED_BELOW_POINTS)
            periods = math.ceil(horizon_days / rule.cap.period_days) + 1
            bound += periods * math.ceil(rule.cap.points / rule.points)
    assert open_awards <= bound
    assert len(open_periods) < len(items) / 20
    # Only the newest periods are kept unpacked: the rest wait in one archive text per rule.
    assert all(len(t.periods) <= LIVE_PERIODS for t in behaviour.tallies.values())
    at = state.last_activity_at
    scratch, _ = behaviour_score(raw_hits(items), PLAYBOOK, at)
    assert state.score.behaviour == pytest.approx(scratch, abs=0.01)


def test_an_activity_dated_years_ahead_does_not_freeze_the_lead():
    """A page view dated five years ahead, then a demo request and a form dated now."""
    now = T0
    future = activity("page_view", minutes=60 * 24 * 365 * 5)
    state, _ = apply_activity(LeadState(lead_key="k"), future, "f", PLAYBOOK, received_at=now)
    assert state.last_activity_at == now + timedelta(minutes=5)
    names = []
    for i, kind in enumerate(["demo_request", "form_submit"]):
        state, transitions = apply_activity(state, activity(kind, i), f"e{i}", PLAYBOOK, now)
        names += [t.name for t in transitions]
    assert state.stage == "mql" and BECAME_MQL in names
    assert state.score.total >= 60
    assert effective_time(T0, T0 - timedelta(hours=1)) == T0 - timedelta(minutes=55)
    assert effective_time(T0, None) == T0


def through_the_row(state):
    """The state as the repository writes its behaviour record to JSON and reads it back."""
    doc = jsoncodec.loads(jsoncodec.dumps(encode_behaviour(state.behaviour)))
    return replace(state, behaviour=decode_behaviour(doc))


@settings(max_examples=40)
@given(steps, st.randoms())
def test_storing_the_record_between_events_changes_no_score(items, rng):
    """Archived cap periods go to the row packed and come back for late activities intact."""
    shuffled = list(enumerate(items))
    rng.shuffle(shuffled)
    kept = stored = LeadState(lead_key="email:ana@acme.example")
    for i, (kind, minutes) in shuffled:
        kept, _ = apply_activity(kept, activity(kind, minutes), f"e{i}", PLAYBOOK)
        stored, _ = apply_activity(
            through_the_row(stored), activity(kind, minutes), f"e{i}", PLAYBOOK
        )
        assert stored.score == kept.score and stored.stage == kept.stage
    at = T0 + timedelta(days=120)
    assert evaluate(stored, PLAYBOOK, at) == evaluate(kept, PLAYBOOK, at)


def test_a_record_stored_before_the_archive_still_decodes_and_scores_the_same():
    """Rows written by earlier versions: each period's awards as JSON text, one array each."""
    items = [(KINDS[i % 6], i * 6 * 60) for i in range(120)]  # 30 days, every cap period open
    state, _ = fold(items)
    periods = {r: all_periods(t) for r, t in state.behaviour.tallies.items()}
    assert max(len(p) for p in periods.values()) > LIVE_PERIODS  # some are archived
    old_row = {
        "tallies": {
            rule: [t.settled, t.open, t.as_of_us, t.settled_through, [[p, pack(a)] for p, a in ps]]
            for (rule, t), ps in zip(state.behaviour.tallies.items(), periods.values(), strict=True)
        },
        "recent": [list(r) for r in state.behaviour.recent],
        "origins": sorted(state.behaviour.origins),
    }
    old = replace(state, behaviour=decode_behaviour(jsoncodec.loads(jsoncodec.dumps(old_row))))
    late = [("email_open", 61), ("pricing_page_view", 62), ("page_view", 30 * 24 * 60)]
    for i, (kind, minutes) in enumerate(late):
        old, _ = apply_activity(old, activity(kind, minutes), f"late{i}", PLAYBOOK)
        state, _ = apply_activity(state, activity(kind, minutes), f"late{i}", PLAYBOOK)
    assert old.score == state.score
    at = T0 + timedelta(days=40)
    assert evaluate(old, PLAYBOOK, at) == evaluate(state, PLAYBOOK, at)


def test_a_changed_copy_of_the_playbook_is_scored_by_its_own_rules():
    """Rules are prepared once per playbook object; a copy with other rules is not served them."""
    state, _ = fold([("demo_request", 0), ("form_submit", 1)])
    no_decay = PLAYBOOK.model_copy(
        update={
            "scoring": PLAYBOOK.scoring.model_copy(
                update={"decay": PLAYBOOK.scoring.decay.model_copy(update={"half_life_days": None})}
            )
        }
    )
    later = T0 + timedelta(days=30)
    assert evaluate(state, PLAYBOOK, later).behaviour == pytest.approx(30.0)
    assert evaluate(state, no_decay, later).behaviour == 60.0
    assert evaluate(state, PLAYBOOK, later).behaviour == pytest.approx(30.0)


def test_fit_tells_apart_attribute_values_that_python_counts_as_equal():
    """1, 1.0 and True are one dict key, but a regex reads them as "1", "1.0" and "True"."""
    playbook = PLAYBOOK.model_copy(
        update={
            "scoring": PLAYBOOK.scoring.model_copy(
                update={"fit": [FitRule(name="whole", attribute="seats", regex="^1$", points=7)]}
            )
        }
    )
    scores = [
        fit_score("a@acme.example", {"seats": value}, playbook)[0] for value in (1, True, 1.0, 1)
    ]
    assert scores == [7.0, 0.0, 0.0, 7.0]


def test_an_attribute_sent_again_with_another_type_takes_the_new_value():
    """1 == True in Python, but the lead said true: the stored attributes follow the event."""
    state, _ = apply_activity(
        LeadState(lead_key="k"), activity("page_view", attributes={"trial": 1}), "e1", PLAYBOOK
    )
    state, _ = apply_activity(
        state, activity("page_view", 1, attributes={"trial": True}), "e2", PLAYBOOK
    )
    assert state.attributes["trial"] is True


@settings(max_examples=30)
@given(steps, steps)
def test_no_function_changes_the_records_it_is_given(first, second):
    """Every function returns new records and leaves its inputs as they were."""
    a, _ = fold(first, LeadState(lead_key="email:ana@acme.example"))
    b = LeadState(lead_key="segment_anonymous:x")
    for i, (kind, minutes) in enumerate(second):
        b, _ = apply_activity(b, activity(kind, minutes), f"other{i}", PLAYBOOK)
    a_then, b_then = deepcopy(a), deepcopy(b)
    apply_activity(a, activity("form_submit", 5), "late", PLAYBOOK)
    apply_activity(a, activity("email_open", 60 * 24 * 200), "later", PLAYBOOK)
    merge(a, b, PLAYBOOK)
    apply_sales_outcome(a, "recycled", None, T0 + timedelta(days=1), PLAYBOOK)
    retier(a, PLAYBOOK, T0 + timedelta(days=400))
    assert a == a_then and b == b_then


attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(allow_nan=True, allow_infinity=False, width=16),
    st.text(max_size=2),
    st.lists(st.one_of(st.booleans(), st.integers(0, 1)), max_size=2),
)
attribute_dicts = st.dictionaries(st.sampled_from(["a", "b", "job_title"]), attribute_values)


@settings(max_examples=200, deadline=None)
@given(attribute_dicts, attribute_dicts)
@example({"a": -0.0}, {"a": 0.0})
@example({"a": [1]}, {"a": [True]})
@example({"a": 1}, {"a": True})
def test_attributes_sent_again_end_up_exactly_as_merging_them_would(first, second):
    """A lead that shares its old attributes when nothing changed still holds the event's values
    (0.0 after -0.0, True after 1, [True] after [1] all count as a change)."""
    state, _ = apply_activity(
        LeadState(lead_key="k"), activity("page_view", attributes=first), "e1", PLAYBOOK
    )
    state, _ = apply_activity(state, activity("page_view", 1, attributes=second), "e2", PLAYBOOK)
    expected = {**first, **second}
    assert list(state.attributes) == list(expected)
    assert repr(state.attributes) == repr(expected)
    assert [type(v) for v in state.attributes.values()] == [type(v) for v in expected.values()]


@given(steps, st.randoms())
def test_the_decay_timer_from_the_activity_score_is_the_one_worked_out_from_the_row(items, rng):
    """The next band crossing taken from the points an activity's score summed is the one the
    tallies give for the lead as read back from its row (which holds no such points)."""
    shuffled = list(enumerate(items))
    rng.shuffle(shuffled)
    state = LeadState(lead_key="email:ana@acme.example")
    for i, (kind, minutes) in shuffled:
        state, _ = apply_activity(state, activity(kind, minutes), f"e{i}", PLAYBOOK)
        assert state.score.worked_out(compiled_rules(PLAYBOOK), state) is not None
        assert next_score_change(state, PLAYBOOK) == next_score_change(
            through_the_row(state), PLAYBOOK
        )


@pytest.mark.parametrize("kind", [*KINDS, "webinar_attended", "no_rule_names_this"])
@pytest.mark.parametrize("path", [None, "/pricing", "/blog"])
def test_an_activity_earns_points_exactly_when_a_rule_awards_it(kind, path):
    data = activity(kind, properties={"path": path} if path else None)
    assert earns_points(data, PLAYBOOK) == bool(activity_hits(data, "e1", PLAYBOOK, T0))
