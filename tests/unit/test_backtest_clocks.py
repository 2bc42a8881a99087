"""The backtest's simulated handoff desk runs the live clocks and after-handoff policies at
event time: breaches, the manager queue, stale handoffs, rises in tier and reject policies."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from services.backtest.clocks import (
    ACCEPT_BREACH,
    MANAGER_BREACH,
    STALE_RECYCLE,
    Desk,
    Routed,
)
from services.backtest.compare import after_handoff, compare
from services.backtest.report import write_backtest
from services.backtest.run import backtest
from services.backtest.simulate import HistoryEvent, decode, simulate
from services.handoff.policies import last_feedback_at, stale_deadlines
from services.handoff.status import OPEN_STATUSES, HandoffStatus
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.scoring.core import to_us
from shared.events import HandoffData
from shared.playbook import Playbook, parse_playbook
from shared.settings import REPO_ROOT
from shared.vocabulary import FeedbackAction

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
DESK = """
routing:
  rules:
    - { name: everyone, team: sales }
  teams:
    - name: sales
      manager_queue: sales-manager
      reps:
        - { id: rep-a, name: Ann, email: a@example.com, capacity: 2 }
        - { id: rep-b, name: Bob, email: b@example.com, capacity: 2 }
sla:
  tiers:
    hot: { accept_minutes: 10, contact_minutes: 60 }
    warm: { accept_minutes: 60, contact_minutes: 240 }
    cold: { accept_minutes: 1440, contact_minutes: 2880 }
  max_reassignments: 1
  reject_reasons: [not_a_fit, no_budget, duplicate, bad_timing, spam]
  reject_policies:
    bad_timing: { policy: revisit, days: 10 }
    not_a_fit: { policy: suppress, days: 30 }
    duplicate: { policy: merge }
    spam: { policy: disqualify }
  stale:
    tiers:
      hot: { remind_days: 1, recycle_days: 3 }
      warm: { remind_days: 2, recycle_days: 5 }
  manager_queue:
    tiers: { hot: 30, warm: 120 }
    final: FINAL
"""


def playbook(final: str = "recycle") -> Playbook:
    head = EXAMPLE[: EXAMPLE.index("routing:")]
    return parse_playbook(head + DESK.replace("FINAL", final))


def lead(name: str, tier: str = "warm", fit: float = 20.0) -> Routed:
    return Routed(f"email:{name}@acme.example", f"{name}@acme.example", {}, tier, 60, fit)


def run_until(desk: Desk, at: datetime) -> list[str]:
    """Fire every timer due by `at`, as the simulation does before a later event."""
    recycled = []
    while desk.due and desk.due[0][0] <= int(at.timestamp() * 1_000_000):
        fired = desk.fire_next()
        if fired is not None:
            recycled.append(fired[0])
    return recycled


def kinds(desk: Desk) -> list[str]:
    return [e.kind if e.kind != "recycled" else f"recycled {e.detail}" for e in desk.events]


def test_a_lead_nobody_accepts_is_reassigned_escalated_and_recycled_as_unworked():
    desk = Desk(playbook())
    ana = lead("ana", "hot")
    desk.route(ana, T0)
    first = desk.handoffs[0].rep_id
    assert desk.handoffs[0].accept_by == T0 + timedelta(minutes=10)
    assert run_until(desk, T0 + timedelta(minutes=15)) == []
    h = desk.handoffs[0]
    assert h.status == HandoffStatus.ASSIGNED and h.rep_id not in {first, None}
    assert h.accept_by == T0 + timedelta(minutes=20)  # a fresh clock from the breach
    assert run_until(desk, T0 + timedelta(minutes=21)) == []
    h = desk.handoffs[0]
    assert (h.status, h.rep_id, h.queue) == (HandoffStatus.ESCALATED, None, "sales-manager")
    assert h.queue_due_at == T0 + timedelta(minutes=50)
    assert run_until(desk, T0 + timedelta(minutes=49)) == []  # the warning only
    assert run_until(desk, T0 + timedelta(minutes=50)) == [ana.lead_key]
    assert kinds(desk) == [
        "sla_breached",
        "reassigned",
        "sla_breached",
        "escalated",
        "manager_queue_warning",
        "manager_queue_breached",
        "recycled unworked/recycle",
    ]
    h = desk.handoffs[0]
    assert (h.status, h.reason, h.recycle_policy) == (HandoffStatus.RECYCLED, "unworked", "recycle")
    assert all(r.open_handoffs == 0 for r in desk.loads.values())
    assert desk.finished()[0].rep_id == first  # the routing record keeps the first rep


def test_the_manager_queue_policy_keep_leaves_the_lead_waiting():
    desk = Desk(playbook(final="keep"))
    desk.route(lead("ana", "hot"), T0)
    assert run_until(desk, T0 + timedelta(days=1)) == []
    assert desk.handoffs[0].status == HandoffStatus.ESCALATED
    assert kinds(desk)[-1] == "manager_queue_breached"


def test_an_accept_in_time_stops_the_breach_and_feedback_moves_the_stale_clock():
    desk = Desk(playbook())
    ana = lead("ana")
    desk.route(ana, T0)
    desk.feedback((ana.lead_key,), FeedbackAction.ACCEPT, T0 + timedelta(minutes=30))
    # Contacted a day later: the stale clock counts from then (reminder 2 days, recycle 5).
    contacted = T0 + timedelta(days=1)
    desk.feedback((ana.lead_key,), FeedbackAction.CONTACT, contacted)
    assert run_until(desk, contacted + timedelta(days=2, minutes=-1)) == []
    assert "stale_reminder" not in kinds(desk)  # the accept's reminder was moved
    assert run_until(desk, contacted + timedelta(days=2)) == []
    assert kinds(desk) == ["stale_reminder"]
    assert run_until(desk, contacted + timedelta(days=5)) == [ana.lead_key]
    assert kinds(desk) == ["stale_reminder", "recycled stale/recycle"]
    assert desk.loads[desk.handoffs[0].rep_id or ""].open_handoffs == 0


def test_a_late_accept_counts_as_a_breach_only_if_the_breach_has_not_fired():
    desk = Desk(playbook())
    ana = lead("ana")
    desk.route(ana, T0)
    desk.feedback((ana.lead_key,), FeedbackAction.ACCEPT, T0 + timedelta(minutes=5))
    assert desk.handoffs[0].accept_breaches == 0
    assert run_until(desk, T0 + timedelta(hours=2)) == []
    assert "sla_breached" not in kinds(desk)


def test_a_rise_in_tier_tightens_the_running_clock_and_the_old_deadline_is_dropped():
    desk = Desk(playbook())
    ana = lead("ana", "warm")
    desk.route(ana, T0)
    warm_by = desk.handoffs[0].accept_by
    desk.raise_tier(ana.lead_key, "hot", 100, T0 + timedelta(minutes=5))
    h = desk.handoffs[0]
    assert (h.tier, h.score) == ("hot", 100)
    assert h.accept_by == T0 + timedelta(minutes=15) and warm_by and h.accept_by < warm_by
    desk.raise_tier(ana.lead_key, "warm", 60, T0 + timedelta(minutes=6))  # a fall: nothing
    assert desk.handoffs[0].tier == "hot"
    run_until(desk, T0 + timedelta(minutes=15))
    assert kinds(desk) == ["tier_raised", "sla_breached", "reassigned"]
    # The warm deadline's timer belonged to the old clock: it breaches nothing.
    run_until(desk, (warm_by or T0) + timedelta(seconds=1))
    assert kinds(desk).count("sla_breached") == 2  # the reassigned rep's own hot clock


def test_a_rise_in_tier_tightens_an_accepted_handoffs_stale_clock_or_starts_one():
    desk = Desk(playbook())
    ana, bob = lead("ana", "warm"), lead("bob", "cold")  # cold: no stale policy
    desk.route(ana, T0)
    desk.route(bob, T0)
    accepted = T0 + timedelta(minutes=5)
    desk.feedback((ana.lead_key,), FeedbackAction.ACCEPT, accepted)
    desk.feedback((bob.lead_key,), FeedbackAction.ACCEPT, accepted)
    desk.raise_tier(ana.lead_key, "hot", 100, accepted + timedelta(hours=2))
    # Ana: the hot clock from the accept (reminder 1 day, recycle 3), not the warm (2, 5).
    assert run_until(desk, accepted + timedelta(days=1, minutes=-1)) == []
    assert kinds(desk) == ["tier_raised"]
    assert run_until(desk, accepted + timedelta(days=1)) == []
    assert kinds(desk) == ["tier_raised", "stale_reminder"]
    # Bob, hot two days after the accept: the hot clock starts, its reminder due already.
    desk.raise_tier(bob.lead_key, "hot", 100, accepted + timedelta(days=2))
    assert run_until(desk, accepted + timedelta(days=2)) == []
    assert kinds(desk) == ["tier_raised", "stale_reminder", "tier_raised", "stale_reminder"]
    assert run_until(desk, accepted + timedelta(days=3)) == [ana.lead_key, bob.lead_key]
    run_until(desk, accepted + timedelta(days=6))  # the warm clock's timers fire nothing
    assert kinds(desk)[4:] == ["recycled stale/recycle", "recycled stale/recycle"]


def test_bad_timing_comes_back_at_its_date_unless_the_lead_was_routed_again_before():
    desk = Desk(playbook())
    later, sooner = lead("later"), lead("sooner")
    for who in (later, sooner):
        desk.route(who, T0)
        desk.feedback(
            (who.lead_key,), FeedbackAction.REJECT, T0 + timedelta(minutes=1), "bad_timing"
        )
    assert desk.handoffs[0].revisit_at == T0 + timedelta(days=10, minutes=1)
    desk.route(sooner, T0 + timedelta(days=3))  # qualified again before the date
    run_until(desk, T0 + timedelta(days=11))
    routed = [h.lead_key for h in desk.handoffs]
    assert routed == [later.lead_key, sooner.lead_key, sooner.lead_key, later.lead_key]
    assert desk.handoffs[3].routing_reason.startswith("revisit after bad_timing: ")
    assert [e.kind for e in desk.events].count("revisited") == 1


def test_not_a_fit_holds_the_lead_back_while_its_fit_holds_and_disqualify_for_good():
    desk = Desk(playbook())
    nofit, spam, dup = lead("nofit"), lead("spam"), lead("dup")
    for who, reason in ((nofit, "not_a_fit"), (spam, "spam"), (dup, "duplicate")):
        desk.route(who, T0)
        desk.feedback((who.lead_key,), FeedbackAction.REJECT, T0, reason)
    desk.route(nofit, T0 + timedelta(days=1))  # the same fit: held back
    desk.route(spam, T0 + timedelta(days=400))
    assert len(desk.handoffs) == 3
    desk.route(Routed(nofit.lead_key, nofit.email, {}, "warm", 60, 35.0), T0 + timedelta(days=2))
    desk.route(nofit, T0 + timedelta(days=31))  # after the suppression: routed
    assert [h.lead_key for h in desk.handoffs[3:]] == [nofit.lead_key] * 2
    assert after_handoff_counts(desk) == {
        "recycled_by_reason": {"duplicate": 1, "not_a_fit": 1, "spam": 1},
        "recycled_by_policy": {"disqualify": 1, "merge": 1, "suppress": 1},
        "suppressed": 2,
    }


def after_handoff_counts(desk: Desk) -> dict:
    from services.backtest.simulate import Outcome

    counts = after_handoff(Outcome(clock_events=desk.events))
    return {k: counts[k] for k in ("recycled_by_reason", "recycled_by_policy", "suppressed")}


def test_a_full_team_queues_and_a_closed_handoff_frees_the_slot():
    desk = Desk(playbook())
    leads = [lead(f"p{n}") for n in range(5)]
    for who in leads:
        desk.route(who, T0)
    assert [h.status for h in desk.handoffs].count(HandoffStatus.QUEUED) == 1
    desk.feedback((leads[0].lead_key,), FeedbackAction.ACCEPT, T0)
    desk.feedback((leads[0].lead_key,), FeedbackAction.CONVERT, T0, converted_to="sql")
    assert desk.handoffs[4].status == HandoffStatus.ASSIGNED
    assert desk.finished()[4].assigned_at == T0


# -- properties -----------------------------------------------------------------------------

ACTIONS = st.sampled_from(["route", "accept", "contact", "reject", "convert", "raise", "wait"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            ACTIONS,
            st.integers(0, 5),
            st.sampled_from(["not_a_fit", "no_budget", "duplicate", "bad_timing", "spam"]),
            st.integers(0, 3 * 24 * 60),
        ),
        max_size=40,
    ),
    st.sampled_from(["recycle", "keep"]),
)
def test_the_desk_keeps_its_books_whatever_sales_and_the_clocks_do(steps, final):
    desk = Desk(playbook(final))
    now = T0
    for action, who, reason, minutes in steps:
        key = f"email:p{who}@acme.example"
        if action == "wait":
            now += timedelta(minutes=minutes)
            run_until(desk, now)
        elif action == "route":
            desk.route(lead(f"p{who}", ["hot", "warm", "cold"][who % 3]), now)
        elif action == "raise":
            before = {i: h.accept_by for i, h in enumerate(desk.handoffs) if h.accept_by}
            desk.raise_tier(key, "hot", 100, now)
            for i, by in before.items():  # a rise never loosens a deadline
                after = desk.handoffs[i].accept_by
                assert after is not None and after <= by
        else:
            action_ = {
                "accept": FeedbackAction.ACCEPT,
                "contact": FeedbackAction.CONTACT,
                "reject": FeedbackAction.REJECT,
                "convert": FeedbackAction.CONVERT,
            }[action]
            desk.feedback((key,), action_, now, reason, "sql")
        # A rep's load is the handoffs that hold one of their slots, never above capacity.
        for rep in desk.loads.values():
            holding = [
                h for h in desk.handoffs if h.rep_id == rep.rep_id and h.status in OPEN_STATUSES
            ]
            assert rep.open_handoffs == len(holding) <= rep.capacity
        queued = {i for i, h in enumerate(desk.handoffs) if h.status == HandoffStatus.QUEUED}
        assert queued == set(desk.queued.get("sales", []))
        # Every handoff closed by a policy is counted once, by its reason and policy.
        closed = [h for h in desk.handoffs if h.recycle_policy]
        recycled = [e for e in desk.events if e.kind == "recycled"]
        assert len(recycled) == len(closed)
        # Every clock still running has its timer pending, as every live clock has its
        # durable timer: the accept deadline, the manager queue's, the stale recycle.
        pending = {(kind, i, token) for _, _, kind, i, token in desk.due}
        timers = {(kind, i, token, due_us) for due_us, _, kind, i, token in desk.due}
        for i, h in enumerate(desk.handoffs):
            if h.status == HandoffStatus.ASSIGNED and h.accept_by:
                assert (ACCEPT_BREACH, i, h.accept_by) in pending
            if h.status == HandoffStatus.ESCALATED and h.queue_due_at and final == "recycle":
                assert (MANAGER_BREACH, i, h.queue_due_at) in pending
            # The stale recycle at the handoff's tier's clock: a rise in tier tightens it, or
            # starts it when the tier it was accepted at had none.
            stale = stale_deadlines(h, desk.playbook)
            if stale:
                assert (STALE_RECYCLE, i, last_feedback_at(h), to_us(stale[1])) in timers


# -- through simulate ------------------------------------------------------------------------


def activity(n: int, email: str, kind: str, at: datetime, size: int = 300) -> dict:
    return {
        "id": f"{email}-{n}",
        "identity": {"email": email},
        "attributes": {"company_size": size},
        "activity": {"type": kind, "occurred_at": at.isoformat()},
    }


def handoff_event(kind: str, key: str, at: datetime, **data) -> HistoryEvent:
    h = HandoffData(
        handoff_id=f"h-{key}",
        status="assigned",
        lead_key=key,
        rep_id="rep-a",
        score=60,
        stage="mql",
        routing_reason="",
        **data,
    )
    return HistoryEvent(at, f"{kind}-{key}-{at.isoformat()}", key, None, kind, h, (key,))


def history(raw: list[dict], facts: list[HistoryEvent]) -> list[HistoryEvent]:
    native = TypeAdapter(NativeLeadEvent)
    events = decode(native_to_cloud_event(native.validate_python(e), "api") for e in raw)
    return sorted(events + facts, key=lambda e: (e.at, e.id))


def test_the_simulation_recycles_an_unworked_lead_and_routes_it_when_it_qualifies_again():
    raw = [
        activity(0, "eva@mid.example", "form_submit", T0),
        activity(1, "eva@mid.example", "form_submit", T0 + timedelta(minutes=1)),
        # A month later (its score decayed below the threshold): back with a demo request.
        activity(2, "eva@mid.example", "demo_request", T0 + timedelta(days=30)),
    ]
    book = playbook()
    outcome = simulate(history(raw, []), book)
    # The history ends with the demo request: the second handoff's clocks have not run out.
    assert [(h.status, h.tier) for h in outcome.handoffs] == [
        ("recycled", "warm"),
        ("assigned", "hot"),
    ]
    assert outcome.handoffs[0].reason == "unworked"
    assert len(outcome.mqls) == 2 and outcome.stages["email:eva@mid.example"] == "mql"
    # Without a manager-queue clock the lead waits in the queue forever and never comes back.
    still = parse_playbook(
        EXAMPLE[: EXAMPLE.index("routing:")]
        + DESK.replace("FINAL", "recycle").replace("tiers: { hot: 30, warm: 120 }", "tiers: {}")
    )
    waiting = simulate(history(raw, []), still)
    assert [h.status for h in waiting.handoffs] == ["escalated"]
    assert waiting.stages["email:eva@mid.example"] == "mql"


def test_sales_feedback_reaches_the_simulated_handoff_and_the_reject_policy_decides_the_stage():
    key = "email:eva@mid.example"
    raw = [activity(n, "eva@mid.example", "form_submit", T0 + timedelta(minutes=n)) for n in (0, 1)]
    accepted = handoff_event("accepted", key, T0 + timedelta(minutes=5))
    for reason, stage, status in (
        ("duplicate", "mql", "rejected"),
        ("no_budget", "recycled", "rejected"),
    ):
        rejected = handoff_event("rejected", key, T0 + timedelta(hours=1), reason=reason)
        outcome = simulate(history(raw, [accepted, rejected]), playbook())
        assert outcome.stages[key] == stage
        assert [(h.status, h.reason) for h in outcome.handoffs] == [(status, reason)]
        assert "sla_breached" not in [e.kind for e in outcome.clock_events]


def test_the_report_counts_what_the_clocks_did_for_each_playbook(tmp_path):
    raw = [
        activity(n, f"p{i}@mid.example", "form_submit", T0 + timedelta(hours=i, minutes=n))
        for i in range(6)
        for n in (0, 1)
    ] + [activity(9, "late@mid.example", "form_submit", T0 + timedelta(days=3))]
    events = history(raw, [])
    slow = playbook(final="keep")
    result = compare(simulate(events, playbook()), simulate(events, slow), playbook(), slow, {})
    a, b = result["baseline"]["after_handoff"], result["candidate"]["after_handoff"]
    assert a["escalated"] == b["escalated"] == 6
    assert a["manager_queue_breaches"] == b["manager_queue_breaches"] == 6
    assert (a["recycled_by_reason"], b["recycled_by_reason"]) == ({"unworked": 6}, {})
    report, _ = backtest(events, playbook(), slow)
    report["window"] = {"since": None, "until": None}
    text = write_backtest(report, tmp_path, {}).read_text()
    assert "| manager-queue warnings / breaches | 6 / 6 | 6 / 6 |" in text
    assert "| reason unworked | 6 | 0 |" in text
