"""The pure decisions after a handoff (issue 24): a rise in tier tightens the clock, the manager
queue runs its own clock."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.handoff.policies import (
    KeepWaiting,
    Recycle,
    manager_queue_deadlines,
    manager_queue_outcome,
)
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
from shared.playbook.handoff import ManagerQueueSla
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
