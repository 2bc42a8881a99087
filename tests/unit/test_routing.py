from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from services.handoff.routing import RepLoad, route_lead


def rotate(reps: list[RepLoad], leads: int) -> Counter[str]:
    """Route `leads` leads, advancing the ledger as the handoff service does."""
    counts: Counter[str] = Counter()
    for i in range(leads):
        decision = route_lead(f"email:lead{i}@x.example", "sales", reps)
        assert decision.rep_id is not None
        counts[decision.rep_id] += 1
        reps = [
            RepLoad(
                r.rep_id,
                r.name,
                r.team,
                r.weight,
                r.assigned_total + (r.rep_id == decision.rep_id),
                r.active,
            )
            for r in reps
        ]
    return counts


def test_equal_weights_share_leads_evenly():
    reps = [RepLoad(f"rep-{n}", n, "sales", 1, 0) for n in "abc"]
    assert sorted(rotate(reps, 30).values()) == [10, 10, 10]


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5))
def test_weighted_rotation_keeps_every_rep_within_one_lead_of_their_share(weights):
    reps = [RepLoad(f"rep-{i}", str(i), "sales", w, 0) for i, w in enumerate(weights)]
    leads = 12 * sum(weights)
    counts = rotate(reps, leads)
    for rep in reps:
        share = leads * rep.weight / sum(weights)
        assert abs(counts[rep.rep_id] - share) <= rep.weight


def test_inactive_and_other_team_reps_are_skipped():
    reps = [
        RepLoad("rep-a", "A", "sales", 1, 0, active=False),
        RepLoad("rep-b", "B", "partners", 1, 0),
        RepLoad("rep-c", "C", "sales", 1, 99),
    ]
    assert route_lead("email:x@y.example", "sales", reps).rep_id == "rep-c"


def test_no_eligible_rep_queues_the_lead_and_says_why():
    decision = route_lead(
        "email:x@y.example", "sales", [RepLoad("rep-a", "A", "sales", 1, 0, active=False)]
    )
    assert decision.rep_id is None
    assert "no active rep" in decision.reason


def test_ties_are_not_always_won_by_the_same_rep():
    reps = [RepLoad(f"rep-{n}", n, "sales", 1, 0) for n in "abcdef"]
    winners = {route_lead(f"email:{i}@x.example", "sales", reps).rep_id for i in range(50)}
    assert len(winners) > 1
