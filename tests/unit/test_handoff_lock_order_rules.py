"""Which consumer batches take the reps first (the lock order: reps before handoff rows)."""

from datetime import UTC, datetime

from services.handoff.service import _reps_needed_after_a_handoff
from shared.consumer import Delivered
from shared.events import CloudEvent

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def delivered(kind: str, **data: str) -> Delivered:
    event = CloudEvent(
        id=f"{kind}-{len(data)}", source="tests", type=f"leadrouter.{kind}", time=AT,
        subject="email:a@b.example", data=data,
    )  # fmt: skip
    return Delivered(event, "t", 0, 0)


MQL = delivered("lifecycle.became_mql", transition="became_mql")
COUNTED = delivered("lifecycle.became_lead", transition="became_lead")
ACCEPT = delivered("feedback.accept", handoff_id="h1")
REJECT = delivered("feedback.reject", handoff_id="h2")
ERASED = delivered("lifecycle.erased", transition="erased")


def test_lifecycle_batches_route_with_the_reps_taken_first_anyway():
    assert not _reps_needed_after_a_handoff([COUNTED, MQL, COUNTED, MQL])
    assert not _reps_needed_after_a_handoff([REJECT, ACCEPT])  # the rejection locks them first


def test_a_handoff_held_before_routing_or_a_closing_feedback_takes_the_reps_first():
    assert _reps_needed_after_a_handoff([ACCEPT, MQL])
    assert _reps_needed_after_a_handoff([ACCEPT, REJECT])
    assert _reps_needed_after_a_handoff([ERASED, COUNTED, MQL])
    assert not _reps_needed_after_a_handoff([ACCEPT, COUNTED, ERASED])


def test_a_tier_change_locks_a_handoff_so_a_later_rejection_takes_the_reps_first():
    raised = delivered("lifecycle.tier_changed", transition="tier_changed")
    assert _reps_needed_after_a_handoff([raised, REJECT])
    assert _reps_needed_after_a_handoff([raised, MQL])
    assert not _reps_needed_after_a_handoff([MQL, raised, ACCEPT])
