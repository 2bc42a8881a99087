"""Which consumer batches take the reps first (the lock order: reps before handoff rows)."""

from datetime import UTC, datetime

from services.handoff.routing import EVERY_REP, RepScope
from services.handoff.service import HandoffService, _reps_needed_after_a_handoff, routing_last
from shared.consumer import Delivered
from shared.events import CloudEvent
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")


def delivered(kind: str, subject: str = "email:a@b.example", **data: object) -> Delivered:
    event = CloudEvent(
        id=f"{kind}-{len(data)}", source="tests", type=f"leadrouter.{kind}", time=AT,
        subject=subject, data=data,
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


def lead(email: str, **attributes: object) -> Delivered:
    data = {"transition": "became_mql", "lead_key": f"email:{email}", "email": email,
            "attributes": attributes, "stage": "mql", "score": 90, "tier": "hot"}  # fmt: skip
    return delivered("lifecycle.became_mql", f"email:{email}", **data)


def test_a_batch_locks_the_reps_of_every_team_it_routes_to_and_no_other():
    service = HandoffService(PLAYBOOK, "t.handoffs", "t.feedback")
    scope = service._batch_rep_scope([lead("a@acme.example"), COUNTED, ACCEPT])
    assert scope == RepScope(frozenset({"sales"}))
    both = [lead("a@acme.example"), lead("b@bigco.example", company_size=5000)]
    assert service._batch_rep_scope(both) == RepScope(
        frozenset({"sales", "enterprise"}), frozenset({"rep-dora"})
    )
    assert service._batch_rep_scope([COUNTED, ACCEPT]) is None  # nothing routed: no reps
    # A closing feedback drains its team's queue over every rep: the batch takes them all.
    assert service._batch_rep_scope([lead("a@acme.example"), REJECT]) == EVERY_REP


def counted(email: str, **data: object) -> Delivered:
    return delivered("lifecycle.became_lead", f"email:{email}", transition="became_lead", **data)


def test_a_batch_routes_last_so_it_holds_the_reps_only_for_the_routing_and_the_commit():
    a, b, c = lead("a@x.example"), lead("b@x.example"), lead("c@x.example")
    others = [counted("d@x.example"), counted("e@x.example")]
    assert routing_last([a, others[0], b, others[1], c]) == [*others, a, b, c]


def test_a_lead_that_a_later_event_concerns_is_routed_where_it_came():
    a, b = lead("a@x.example"), lead("b@x.example")
    again = counted("a@x.example")
    merging = counted("m@x.example", merged_keys=["email:b@x.example"])
    assert routing_last([a, b, again, merging]) == [a, b, again, merging]
    assert routing_last([a, b, again]) == [a, again, b]
    # b may not pass a: routed leads keep their order (the ledger, and the backtest, use it)
    assert routing_last([b, a, again]) == [b, a, again]


def test_a_batch_that_locks_a_handoff_runs_in_its_order():
    a, b = lead("a@x.example"), lead("b@x.example")
    assert routing_last([a, ACCEPT, b]) == [a, ACCEPT, b]
    assert routing_last([a, ERASED, b]) == [a, ERASED, b]
