from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.handoff.routing import (
    EVERY_REP,
    RepLoad,
    levelled_ledger,
    route_lead,
    routing_scope,
)
from services.handoff.status import (
    FeedbackConflict,
    Handoff,
    HandoffStatus,
    InvalidFeedback,
    deadlines,
    next_status,
)
from shared.playbook import load_playbook
from shared.playbook.handoff import WorkingHours
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def handoff(status, **fields):
    return Handoff(
        handoff_id="h1",
        lead_key="email:x@y.example",
        status=HandoffStatus(status),
        team="sales",
        tier="hot",
        score=90,
        routing_reason="test",
        **fields,
    )


def sales(*names, **overrides):
    return [RepLoad(f"rep-{n}", n, "sales", 1, 0, **overrides) for n in names]


def route(
    reps,
    lead="email:x@y.example",
    email="x@y.example",
    attributes=None,
    tier="hot",
    now=MONDAY_NOON,
    exclude=frozenset(),
):
    return route_lead(lead, email, attributes or {}, tier, reps, PLAYBOOK, now, exclude)


def rotate(reps, leads):
    """Route `leads` leads, advancing the ledger as the handoff service does."""
    counts: Counter[str] = Counter()
    for i in range(leads):
        decision = route(reps, lead=f"email:lead{i}@x.example")
        assert decision.rep_id is not None
        counts[decision.rep_id] += 1
        reps = [
            replace(r, assigned_total=r.assigned_total + (r.rep_id == decision.rep_id))
            for r in reps
        ]
    return counts


def test_equal_weights_share_leads_evenly():
    assert sorted(rotate(sales("a", "b", "c"), 30).values()) == [10, 10, 10]


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5))
def test_weighted_rotation_keeps_every_rep_within_their_weight_of_their_share(weights):
    reps = [RepLoad(f"rep-{i}", str(i), "sales", w, 0) for i, w in enumerate(weights)]
    leads = 12 * sum(weights)
    counts = rotate(reps, leads)
    for rep in reps:
        share = leads * rep.weight / sum(weights)
        assert abs(counts[rep.rep_id] - share) <= rep.weight


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 5)), min_size=1, max_size=6))
def test_nobody_at_capacity_or_out_of_office_gets_a_lead(loads):
    reps = [
        RepLoad(
            f"rep-{i}",
            str(i),
            "sales",
            1,
            0,
            open_handoffs=open_,
            capacity=cap,
            available=i % 3 != 2,
        )
        for i, (open_, cap) in enumerate(loads)
    ]
    decision = route(reps)
    eligible = {r.rep_id for r in reps if r.open_handoffs < r.capacity and r.available}
    assert decision.rep_id in eligible if eligible else decision.rep_id is None
    assert set(decision.skipped) == {r.rep_id for r in reps} - eligible


ROSTER = [
    RepLoad(r.id, r.name, t.name, r.weight, 0, capacity=r.capacity, working_hours=r.working_hours)
    for t in PLAYBOOK.routing.teams
    for r in t.reps
]


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 12), st.booleans()), min_size=5, max_size=5
    ),
    st.sampled_from(["a@bigco.example", "b@acme.example", None]),
    st.sampled_from([None, 10, 5000]),
    st.sampled_from(["hot", "warm", "cold"]),
    st.integers(0, 24 * 7),
)
def test_routing_over_its_scope_decides_as_over_every_rep(loads, email, size, tier, hour):
    # Routing locks only its scope's reps: the decision must be the one over the whole roster.
    reps = [
        replace(r, assigned_total=total, open_handoffs=open_, available=available)
        for r, (total, open_, available) in zip(ROSTER, loads, strict=True)
    ]
    attributes = {} if size is None else {"company_size": size}
    scope = routing_scope(email, attributes, tier, PLAYBOOK)
    scoped = [r for r in reps if r.team in scope.teams or r.rep_id in scope.rep_ids]
    now = MONDAY_NOON + timedelta(hours=hour)
    assert len(scoped) < len(reps)  # a scope, not the roster
    assert route(scoped, email=email, attributes=attributes, tier=tier, now=now) == route(
        reps, email=email, attributes=attributes, tier=tier, now=now
    )


def test_the_scope_is_the_rules_team_and_the_account_owner():
    assert routing_scope("x@bigco.example", {}, "hot", PLAYBOOK).rep_ids == {"rep-dora"}
    assert routing_scope("x@acme.example", {"company_size": 5000}, "hot", PLAYBOOK).teams == {
        "enterprise"
    }
    assert routing_scope("x@acme.example", {}, "hot", PLAYBOOK).teams == {"sales"}
    remembering = PLAYBOOK.model_copy(
        update={
            "routing": PLAYBOOK.routing.model_copy(
                update={
                    "existing_owner": PLAYBOOK.routing.existing_owner.model_copy(
                        update={"days": 30}
                    )
                }
            )
        }
    )
    assert routing_scope("x@acme.example", {}, "hot", remembering) == EVERY_REP


def test_account_owner_comes_first_unless_unavailable():
    dora = RepLoad("rep-dora", "Dora", "enterprise", 2, 100)
    reps = [*sales("a"), dora]
    assert route(reps, email="cto@bigco.example").rule == "account owner"
    away = route([*sales("a"), replace(dora, available=False)], email="cto@bigco.example")
    assert away.rep_id == "rep-a"
    assert away.skipped["rep-dora"] == "account owner, but out of office"


def test_rules_pick_the_team_in_order():
    reps = [*sales("a"), RepLoad("rep-eli", "Eli", "enterprise", 1, 0)]
    big = route(reps, attributes={"company_size": 5000})
    assert (big.rep_id, big.team, big.rule) == ("rep-eli", "enterprise", "enterprise")
    assert route(reps, attributes={"company_size": 20}).team == "sales"


def test_working_hours_in_the_reps_time_zone():
    berlin = WorkingHours(timezone="Europe/Berlin", days=["mon"], start="09:00", end="17:00")
    reps = sales("a", working_hours=berlin)
    assert route(reps, now=MONDAY_NOON).rep_id == "rep-a"  # 13:00 in Berlin
    assert route(reps, now=MONDAY_NOON.replace(hour=17)).rep_id is None  # 18:00 in Berlin
    assert route(reps, now=MONDAY_NOON + timedelta(days=1)).skipped == {
        "rep-a": "outside working hours"
    }


def test_no_eligible_rep_queues_the_lead_and_says_why():
    decision = route(sales("a", active=False))
    assert decision.rep_id is None
    assert decision.skipped == {"rep-a": "not in the roster"}
    assert "queued" in decision.reason


def test_a_reassignment_skips_reps_who_had_the_lead():
    decision = route(sales("a", "b"), exclude=frozenset({"rep-a"}))
    assert decision.rep_id == "rep-b"
    assert decision.skipped == {"rep-a": "had this lead already"}


def test_ties_are_not_always_won_by_the_same_rep():
    reps = sales(*"abcdef")
    assert len({route(reps, lead=f"email:{i}@x.example").rep_id for i in range(50)}) > 1


def test_a_rep_back_from_absence_is_not_flooded():
    reps = [
        RepLoad("rep-a", "a", "sales", 1, 3),
        RepLoad("rep-b", "b", "sales", 1, 40),
        RepLoad("rep-c", "c", "sales", 2, 90),
    ]
    # the rotation last picked rep-b at 40 handoffs per unit of weight
    assert levelled_ledger(3, 1, 40.0) == 40
    assert levelled_ledger(50, 1, 40.0) == 50  # never lowered
    back = [replace(reps[0], assigned_total=40), *reps[1:]]
    counts = rotate(back, 10)
    assert counts["rep-a"] <= 6


def test_sla_deadlines_per_tier():
    clock = deadlines("hot", MONDAY_NOON, PLAYBOOK)
    assert clock.accept_by == MONDAY_NOON + timedelta(minutes=5)
    assert clock.warn_at == MONDAY_NOON + timedelta(minutes=3)
    assert clock.contact_by == MONDAY_NOON + timedelta(minutes=15)
    assert deadlines("lukewarm", MONDAY_NOON, PLAYBOOK) is None


@pytest.mark.parametrize(
    ("status", "action", "reason", "converted_to", "expected"),
    [
        ("assigned", "accept", None, None, "accepted"),
        ("accepted", "contact", None, None, "contacted"),
        ("assigned", "contact", None, None, "contacted"),
        ("contacted", "reject", "no_budget", None, "rejected"),
        ("contacted", "convert", None, "opportunity", "converted"),
    ],
)
def test_feedback_moves_a_handoff(status, action, reason, converted_to, expected):
    assert next_status(handoff(status), action, PLAYBOOK, reason, converted_to) == expected


@pytest.mark.parametrize(
    ("status", "action", "reason", "converted_to", "code"),
    [
        ("converted", "accept", None, None, 409),
        ("rejected", "contact", None, None, 409),
        ("assigned", "convert", None, "sql", 409),
        ("assigned", "reject", "because", None, 422),
        ("accepted", "convert", None, "lead", 422),
    ],
)
def test_invalid_feedback_is_refused(status, action, reason, converted_to, code):
    with pytest.raises((InvalidFeedback, FeedbackConflict)) as err:
        next_status(handoff(status), action, PLAYBOOK, reason, converted_to)
    assert err.value.status == code


def test_sla_minutes_can_count_only_working_hours():
    from services.handoff.status import add_working_time

    hours = WorkingHours(
        timezone="Europe/Berlin",
        days=["mon", "tue", "wed", "thu", "fri"],
        start="09:00",
        end="17:00",
    )
    friday_1630_berlin = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    due = add_working_time(friday_1630_berlin, timedelta(minutes=60), hours)
    assert due == datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # Monday 09:30 in Berlin
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert add_working_time(saturday, timedelta(minutes=5), hours) == datetime(
        2026, 11, 30, 8, 5, tzinfo=UTC
    )
    assert add_working_time(saturday, timedelta(minutes=5), None) == saturday + timedelta(minutes=5)
    playbook = PLAYBOOK.model_copy(
        update={"sla": PLAYBOOK.sla.model_copy(update={"working_hours_only": True})}
    )
    clock = deadlines("warm", friday_1630_berlin, playbook, hours)
    assert clock.accept_by == datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
    assert clock.warn_at == datetime(2026, 11, 30, 8, 6, tzinfo=UTC)  # 30 min Friday, 6 Monday


@given(st.integers(0, 60 * 24 * 14), st.integers(1, 60 * 40))
def test_working_time_never_ends_outside_working_hours_and_grows_with_the_duration(
    start_min, minutes
):
    from services.handoff.routing import in_working_hours
    from services.handoff.status import add_working_time

    hours = WorkingHours(
        timezone="America/New_York", days=["mon", "wed", "fri"], start="08:00", end="12:00"
    )
    start = MONDAY_NOON + timedelta(minutes=start_min)
    due = add_working_time(start, timedelta(minutes=minutes), hours)
    assert in_working_hours(hours, due)
    assert due >= start + timedelta(minutes=minutes)
    assert add_working_time(start, timedelta(minutes=minutes + 1), hours) > due
