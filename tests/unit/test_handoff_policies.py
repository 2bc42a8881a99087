"""The pure decisions after a handoff (issue 24): a rise in tier tightens the clock, the manager
queue runs its own clock, reject reasons lead somewhere, stale handoffs are reminded and
recycled, a returning lead or account goes to its existing owner."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.handoff.policies import (
    KeepWaiting,
    RecentHandoff,
    Recycle,
    Suppression,
    existing_owner,
    manager_queue_deadlines,
    manager_queue_outcome,
    raised_stale_deadlines,
    reject_outcome,
    routing_suppressed,
    stale_deadlines,
)
from services.handoff.routing import RepLoad, route_lead
from services.handoff.status import (
    RAISABLE_STATUSES,
    Handoff,
    HandoffStatus,
    deadlines,
    raise_tier,
    sla_seconds_left,
    tier_rank,
)
from shared.playbook import load_playbook
from shared.playbook.handoff import (
    ExistingOwnerPolicy,
    ManagerQueueSla,
    RejectPolicy,
    Stale,
    StalePolicy,
)
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIERS = [t.name for t in PLAYBOOK.taxonomy.tiers]


def assigned(tier: str, status: HandoffStatus = HandoffStatus.ASSIGNED, **fields) -> Handoff:
    clock = deadlines(tier, MONDAY_NOON, PLAYBOOK)
    assert clock is not None
    base = {
        "handoff_id": "h1",
        "lead_key": "email:x@y.example",
        "status": status,
        "team": "sales",
        "tier": tier,
        "score": 60,
        "routing_reason": "test",
        "rep_id": "rep-ana",
        "assigned_at": MONDAY_NOON,
        "warn_at": clock.warn_at,
        "accept_by": clock.accept_by,
        "contact_by": clock.contact_by,
    }
    return Handoff(**{**base, **fields})


def test_the_reproduction_a_warm_handoff_turning_hot_gets_the_hot_clock():
    later = MONDAY_NOON + timedelta(minutes=10)
    raised = raise_tier(assigned("warm"), "hot", 100, PLAYBOOK, later)
    assert raised is not None
    assert (raised.tier, raised.previous_tier, raised.score) == ("hot", "warm", 100)
    assert raised.accept_by == later + timedelta(minutes=5)
    assert raised.contact_by == later + timedelta(minutes=15)
    assert raised.warn_at == later + timedelta(minutes=3)


statuses = st.sampled_from(list(HandoffStatus))
tiers = st.sampled_from(TIERS)
minutes = st.integers(0, 60 * 48)


@given(before=tiers, after=tiers, status=statuses, elapsed=minutes)
def test_a_tier_change_never_loosens_a_deadline(before, after, status, elapsed):
    handoff = assigned(before, status)
    now = MONDAY_NOON + timedelta(minutes=elapsed)
    raised = raise_tier(handoff, after, 99, PLAYBOOK, now)
    if raised is None:
        return
    for old, new in (
        (handoff.warn_at, raised.warn_at),
        (handoff.accept_by, raised.accept_by),
        (handoff.contact_by, raised.contact_by),
    ):
        assert old is not None and new is not None and new <= old
    assert raised.warn_at is not None and raised.accept_by is not None
    assert raised.warn_at <= raised.accept_by


@given(before=tiers, after=tiers, status=statuses, elapsed=minutes)
def test_only_a_rise_on_a_handoff_not_closed_changes_it(before, after, status, elapsed):
    now = MONDAY_NOON + timedelta(minutes=elapsed)
    raised = raise_tier(assigned(before, status), after, 99, PLAYBOOK, now)
    rose = tier_rank(after, PLAYBOOK) < tier_rank(before, PLAYBOOK)
    assert (raised is not None) == (rose and status in RAISABLE_STATUSES)


@given(before=tiers, after=tiers, elapsed=minutes)
def test_a_rise_never_sets_a_deadline_in_the_past(before, after, elapsed):
    now = MONDAY_NOON + timedelta(minutes=elapsed)
    handoff = assigned(before)
    raised = raise_tier(handoff, after, 99, PLAYBOOK, now)
    if raised is None or raised.accept_by is None or handoff.accept_by is None:
        return
    # A deadline that moved moved to the new tier's SLA from now: still ahead.
    if raised.accept_by != handoff.accept_by:
        assert raised.accept_by > now


@given(status=st.sampled_from([HandoffStatus.ACCEPTED, HandoffStatus.CONTACTED]))
def test_an_accepted_lead_keeps_its_accept_deadline(status):
    later = MONDAY_NOON + timedelta(minutes=5)
    handoff = assigned("cold", status)
    raised = raise_tier(handoff, "hot", 95, PLAYBOOK, later)
    assert raised is not None and raised.accept_by == handoff.accept_by
    if status == HandoffStatus.ACCEPTED:
        assert raised.contact_by == later + timedelta(minutes=15)
    else:
        assert raised.contact_by == handoff.contact_by  # contacted: no clock runs


# -- the manager queue's clock (item 2) ----------------------------------------------------------

manager_minutes = st.floats(0.01, 10_000, allow_nan=False)


@given(tier=tiers, minutes=manager_minutes, share=st.floats(0.05, 0.95), final=st.booleans())
def test_the_manager_queue_warns_before_it_breaches_then_applies_the_final_policy(
    tier, minutes, share, final
):
    book = PLAYBOOK.model_copy(
        update={
            "sla": PLAYBOOK.sla.model_copy(
                update={
                    "manager_queue": ManagerQueueSla(
                        tiers={tier: minutes},
                        warning_at=share,
                        final="recycle" if final else "keep",
                    )
                }
            )
        }
    )
    clock = manager_queue_deadlines(tier, MONDAY_NOON, book)
    assert clock is not None
    warn_at, due_at = clock
    assert MONDAY_NOON <= warn_at <= due_at
    assert due_at - MONDAY_NOON == timedelta(minutes=minutes)
    others = [t for t in TIERS if t != tier]
    assert all(manager_queue_deadlines(t, MONDAY_NOON, book) is None for t in others)
    outcome = manager_queue_outcome(book)
    assert outcome == (Recycle("unworked") if final else KeepWaiting())


def test_an_escalated_lead_shows_the_manager_queue_clock():
    due = MONDAY_NOON + timedelta(minutes=60)
    escalated = assigned("hot", HandoffStatus.ESCALATED, rep_id=None, queue_due_at=due)
    assert sla_seconds_left(escalated, MONDAY_NOON) == 3600
    assert manager_queue_deadlines(None, MONDAY_NOON, PLAYBOOK) is None


# -- reject reasons lead somewhere (item 4) ------------------------------------------------------

POLICIES = ["recycle", "revisit", "suppress", "merge", "disqualify"]
REASONS = PLAYBOOK.sla.reject_reasons


def with_policies(policies: dict[str, RejectPolicy]):
    return PLAYBOOK.model_copy(
        update={"sla": PLAYBOOK.sla.model_copy(update={"reject_policies": policies})}
    )


def test_the_example_playbook_gives_each_reason_its_policy():
    now = MONDAY_NOON
    bad_timing = reject_outcome("bad_timing", PLAYBOOK, now)
    assert (bad_timing.policy, bad_timing.recycle) == ("revisit", True)
    assert bad_timing.revisit_at == now + timedelta(days=90)
    not_a_fit = reject_outcome("not_a_fit", PLAYBOOK, now)
    assert not_a_fit.suppressed_until == now + timedelta(days=180)
    assert reject_outcome("duplicate", PLAYBOOK, now).recycle is False
    assert reject_outcome("no_budget", PLAYBOOK, now).policy == "recycle"


@given(
    reason=st.sampled_from(REASONS),
    policy=st.sampled_from(POLICIES),
    days=st.floats(0.001, 3650),
    elapsed_days=st.floats(0, 4000),
)
def test_a_reject_policy_routes_again_suppresses_or_closes_as_the_playbook_says(
    reason, policy, days, elapsed_days
):
    book = with_policies({reason: RejectPolicy(policy=policy, days=days)})
    outcome = reject_outcome(reason, book, MONDAY_NOON)
    assert outcome.policy == policy and outcome.reason == reason
    # Back to marketing unless the lead is a duplicate or disqualified.
    assert outcome.recycle == (policy in {"recycle", "revisit", "suppress"})
    assert (outcome.revisit_at is not None) == (policy == "revisit")
    assert (outcome.suppressed_until is not None) == (policy == "suppress")
    for at in (outcome.revisit_at, outcome.suppressed_until):
        assert at is None or at == MONDAY_NOON + timedelta(days=days)
    held = Suppression(policy, outcome.suppressed_until, 20.0)
    later = MONDAY_NOON + timedelta(days=elapsed_days)
    suppressed_same_fit = routing_suppressed(held, 20.0, later)
    if policy == "disqualify":
        assert suppressed_same_fit and routing_suppressed(held, 35.0, later)
    elif policy == "suppress":
        assert suppressed_same_fit == (later < MONDAY_NOON + timedelta(days=days))
        assert not routing_suppressed(held, 35.0, later)  # the fit changed: routed again
    else:
        assert not suppressed_same_fit


def test_a_policy_must_name_a_known_reason_and_have_its_days():
    with pytest.raises(ValueError, match="unknown reject reasons"):
        with_policies({}).sla.model_validate(
            {**PLAYBOOK.sla.model_dump(), "reject_policies": {"typo": {"policy": "merge"}}}
        )
    with pytest.raises(ValueError, match="needs days"):
        RejectPolicy(policy="revisit")
    assert not routing_suppressed(None, 1.0, MONDAY_NOON)


# -- handoffs that never progress (item 3) -------------------------------------------------------


def with_stale(tier: str, remind_days: float, recycle_days: float):
    stale = Stale(tiers={tier: StalePolicy(remind_days=remind_days, recycle_days=recycle_days)})
    return PLAYBOOK.model_copy(update={"sla": PLAYBOOK.sla.model_copy(update={"stale": stale})})


@given(
    tier=tiers,
    status=statuses,
    remind=st.floats(0.01, 30),
    extra=st.floats(0.01, 60),
    accepted_after=st.integers(0, 600),
    contacted_after=st.one_of(st.none(), st.integers(0, 6000)),
)
def test_a_stale_handoff_is_reminded_then_recycled_counted_from_its_last_feedback(
    tier, status, remind, extra, accepted_after, contacted_after
):
    book = with_stale(tier, remind, remind + extra)
    accepted_at = MONDAY_NOON + timedelta(minutes=accepted_after)
    contacted_at = (
        None if contacted_after is None else accepted_at + timedelta(minutes=contacted_after)
    )
    handoff = assigned(tier, status, accepted_at=accepted_at, contacted_at=contacted_at)
    clock = stale_deadlines(handoff, book)
    if status not in {HandoffStatus.ACCEPTED, HandoffStatus.CONTACTED}:
        assert clock is None  # nobody said anything yet, or it is closed
        return
    assert clock is not None
    remind_at, recycle_at = clock
    last = contacted_at or accepted_at
    assert remind_at == last + timedelta(days=remind) < recycle_at
    assert recycle_at == last + timedelta(days=remind + extra)
    assert all(stale_deadlines(handoff, with_stale(t, 1, 2)) is None for t in TIERS if t != tier)


@given(
    before=st.tuples(st.floats(0.01, 30), st.floats(0.01, 30)),
    after=st.tuples(st.floats(0.01, 30), st.floats(0.01, 30)),
    old_has_policy=st.booleans(),
    status=statuses,
)
def test_a_rise_in_tier_tightens_the_stale_clock_and_never_loosens_it(
    before, after, old_has_policy, status
):
    tiers = {"hot": StalePolicy(remind_days=after[0], recycle_days=after[0] + after[1])}
    if old_has_policy:
        tiers["warm"] = StalePolicy(remind_days=before[0], recycle_days=before[0] + before[1])
    stale = Stale(tiers=tiers)
    book = PLAYBOOK.model_copy(update={"sla": PLAYBOOK.sla.model_copy(update={"stale": stale})})
    warm = assigned("warm", status, accepted_at=MONDAY_NOON)
    hot = assigned("hot", status, accepted_at=MONDAY_NOON)
    old, new = stale_deadlines(warm, book), stale_deadlines(hot, book)
    clock = raised_stale_deadlines(warm, hot, book)
    if new is None:  # not accepted or contacted (or closed): no stale clock to move
        assert clock is None
    elif old is None:  # the old tier had none: the new tier's starts
        assert clock == new
    elif new[0] >= old[0] and new[1] >= old[1]:  # nothing sooner: the clock stays
        assert clock is None
    else:
        assert clock == (min(old[0], new[0]), min(old[1], new[1]))
        assert clock[0] <= old[0] and clock[1] <= old[1] and clock != old


def test_a_stale_policy_reminds_before_it_recycles():
    with pytest.raises(ValueError, match="after remind_days"):
        StalePolicy(remind_days=3, recycle_days=3)


# -- the owner who already knows the account (item 6) --------------------------------------------


def with_owner_days(days: float | None):
    routing = PLAYBOOK.routing.model_copy(update={"existing_owner": ExistingOwnerPolicy(days=days)})
    return PLAYBOOK.model_copy(update={"routing": routing})


recent_st = st.lists(
    st.builds(
        RecentHandoff,
        lead_key=st.sampled_from(["email:a@acme.example", "email:b@acme.example"]),
        domain=st.sampled_from(["acme.example", "gmail.com", "other.example"]),
        rep_id=st.sampled_from(["rep-ana", "rep-ben", "rep-chen"]),
        assigned_at=st.integers(0, 90).map(lambda d: MONDAY_NOON - timedelta(days=d)),
        closed_at=st.one_of(
            st.none(), st.integers(0, 90).map(lambda d: MONDAY_NOON - timedelta(days=d))
        ),
    ),
    max_size=6,
)


@given(
    recent=recent_st, days=st.integers(1, 60), domain=st.sampled_from(["acme.example", "gmail.com"])
)
def test_the_existing_owner_is_the_latest_recent_rep_of_the_lead_then_of_its_account(
    recent, days, domain
):
    book = with_owner_days(days)
    owner = existing_owner("email:a@acme.example", domain, recent, book, MONDAY_NOON)
    since = MONDAY_NOON - timedelta(days=days)
    fresh = [h for h in recent if h.closed_at is None or max(h.closed_at, h.assigned_at) >= since]
    mine = [h for h in fresh if h.lead_key == "email:a@acme.example"]
    account = [h for h in fresh if domain != "gmail.com" and h.domain == domain]
    pool = mine or account
    if not pool:
        assert owner is None
        return
    assert owner is not None
    assert owner.rep_id == max(pool, key=lambda h: (h.assigned_at, h.rep_id)).rep_id
    assert ("had this lead" in owner.why) == bool(mine)
    assert existing_owner("email:a@acme.example", domain, recent, PLAYBOOK, MONDAY_NOON) is None


def test_routing_gives_the_lead_to_its_existing_owner_unless_they_cannot_take_it():
    reps = [
        RepLoad("rep-ana", "Ana", "sales", 1, 0),
        RepLoad("rep-ben", "Ben", "sales", 1, 50),
    ]
    previous = ("rep-ben", "had this lead before")
    decision = route_lead("email:a@x.example", "a@x.example", {}, "hot", reps, PLAYBOOK,
                          MONDAY_NOON, previous=previous)  # fmt: skip
    assert (decision.rep_id, decision.rule) == ("rep-ben", "existing owner")
    assert "existing owner" in decision.reason
    away = [reps[0], RepLoad("rep-ben", "Ben", "sales", 1, 50, available=False)]
    decision = route_lead("email:a@x.example", "a@x.example", {}, "hot", away, PLAYBOOK,
                          MONDAY_NOON, previous=previous)  # fmt: skip
    assert decision.rep_id == "rep-ana"
    assert decision.skipped["rep-ben"].endswith("out of office")
