"""The board's after-handoff clocks (issue 24), pure: the manager queue's clock, the stale
clock, the leads a reject policy holds, and how the SLA board renders them."""

from datetime import UTC, datetime, timedelta

from services.handoff.board.access import EVERY_SCOPE, Viewer
from services.handoff.board.endpoints import templates
from services.handoff.board.views import (
    closing,
    manager_queue_clock,
    policy_wait,
    running_clock,
    stale_clock,
    when,
)
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")


def row(status: str, **values):
    return {
        "handoff_id": "h1",
        "lead_key": "email:ana@acme.example",
        "email": "ana@acme.example",
        "status": status,
        "team": "sales",
        "tier": "hot",
        "score": 90,
        "routing_reason": "rule",
        "rep_id": "rep-ana",
        "rep_name": "Ana Lima",
        "created_at": NOW - timedelta(days=2),
        "assigned_at": NOW - timedelta(days=2),
        "reassignments": 0,
        "previous_reps": [],
        "queue": None,
        **values,
    }


def test_the_manager_queue_clock_warns_at_its_timer_and_breaches_at_queue_due_at():
    # The example playbook: hot waits 60 minutes in the manager queue, a warning at 60%.
    due = NOW + timedelta(minutes=30)
    escalated = row("escalated", queue="sales-manager", queue_due_at=due)
    clock = manager_queue_clock(escalated, NOW + timedelta(minutes=5), PLAYBOOK, NOW)
    assert clock and (clock.name, clock.due_at, clock.seconds_left) == ("pick up", due, 1800)
    assert (clock.warn_at, clock.state) == (NOW + timedelta(minutes=5), "ok")
    # The warning fired (its timer is gone): the playbook's point, 24 minutes before the breach.
    fired = manager_queue_clock(escalated, None, PLAYBOOK, NOW + timedelta(minutes=10))
    assert fired and (fired.warn_at, fired.state) == (due - timedelta(minutes=24), "warning")
    late = manager_queue_clock(escalated, None, PLAYBOOK, due + timedelta(seconds=1))
    assert late and late.state == "breached"
    assert manager_queue_clock(row("queued", queue_due_at=None), None, PLAYBOOK, NOW) is None


def test_the_stale_clock_comes_from_the_recycle_timer_and_the_reminder_is_sent_once_gone():
    accepted = NOW - timedelta(days=2)
    h = row("accepted", accepted_at=accepted)
    remind, recycle = accepted + timedelta(days=3), accepted + timedelta(days=7)
    clock = stale_clock(h, remind, recycle, PLAYBOOK)
    assert clock and (clock.since, clock.remind_at, clock.reminder_sent) == (
        accepted,
        remind,
        False,
    )
    assert clock.recycle_at == recycle
    sent = stale_clock(h, None, recycle, PLAYBOOK)
    # the playbook's hot policy: the reminder after 3 days
    assert sent and (sent.reminder_sent, sent.remind_at) == (True, remind)
    contacted = row("contacted", accepted_at=accepted, contacted_at=NOW)
    later = stale_clock(contacted, None, NOW + timedelta(days=7), PLAYBOOK)
    assert later and later.since == NOW
    assert stale_clock(h, None, None, PLAYBOOK) is None  # no policy for its tier: no clock


def test_a_rejected_lead_waits_for_its_revisit_or_the_end_of_its_suppression():
    revisit = NOW + timedelta(days=90)
    later = policy_wait(row("rejected", recycle_policy="revisit", revisit_at=revisit), revisit)
    assert later and (later.policy, later.until) == ("revisit", revisit)
    until = NOW + timedelta(days=180)
    held = policy_wait(row("rejected", recycle_policy="suppress", suppressed_until=until), None)
    assert held and (held.policy, held.until) == ("suppress", until)
    assert (held.before, held.after) == ("not routed until", "unless its fit changes")
    assert policy_wait(row("rejected", recycle_policy="recycle"), None) is None


def test_the_sla_board_shows_each_clock_with_its_date():
    accepted = NOW - timedelta(days=2)
    stale = row("accepted", accepted_at=accepted, contact_by=NOW + timedelta(minutes=5))
    escalated = row(
        "escalated",
        handoff_id="h2",
        queue="sales-manager",
        queue_due_at=NOW + timedelta(minutes=30),
        rep_id=None,
    )
    revisit = row(
        "rejected",
        handoff_id="h3",
        reason="bad_timing",
        recycle_policy="revisit",
        revisit_at=NOW + timedelta(days=90),
    )
    suppressed = row(
        "rejected",
        handoff_id="h4",
        reason="not_a_fit",
        recycle_policy="suppress",
        suppressed_until=NOW + timedelta(days=180),
    )
    html = templates.get_template("sla.html").render(
        now=NOW,
        open=[
            {
                **stale,
                "clock": running_clock(stale, NOW, 0.6),
                "stale": stale_clock(stale, None, accepted + timedelta(days=7), PLAYBOOK),
                "actions": [],
            }
        ],
        queues={
            "sales-manager": [
                {
                    **escalated,
                    "waited_s": 60.0,
                    "queue_clock": manager_queue_clock(escalated, None, PLAYBOOK, NOW),
                }
            ]
        },
        policy_waits=[{**h, "wait": policy_wait(h, None)} for h in (revisit, suppressed)],
        filters={"team": "", "tier": "", "rep_id": ""},
        teams=["sales"],
        tiers=["hot"],
        reps=[],
        rep_names={},
        authors=[],
        reject_reasons=["bad_timing"],
        conversion_stages=["sql"],
        viewer=Viewer(EVERY_SCOPE),
    )
    assert when(accepted + timedelta(days=3)) == "2026-11-24 09:00 UTC"
    assert "reminder sent (due" in html and "2026-11-24 09:00 UTC" in html
    assert "recycled as stale on" in html and "2026-11-28 09:00 UTC" in html
    assert 'data-clock="pick up"' in html and "breach" in html and "2026-11-23 09:30 UTC" in html
    assert "back to routing on" in html and "2027-02-21 09:00 UTC" in html
    assert "not routed until" in html and "2027-05-22 09:00 UTC</time> unless its fit" in html


def test_the_lead_timeline_says_how_each_handoff_closed_and_what_its_policy_set():
    revisit = NOW + timedelta(days=90)
    assert (
        closing(row("rejected", reason="bad_timing", recycle_policy="revisit", revisit_at=revisit))
        == "rejected: bad_timing; back to routing on 2027-02-21 09:00 UTC"
    )
    assert closing(
        row("rejected", reason="not_a_fit", recycle_policy="suppress", suppressed_until=revisit)
    ).endswith("not routed until 2027-02-21 09:00 UTC unless its fit changes")
    assert closing(row("rejected", reason="duplicate", recycle_policy="merge")) == (
        "rejected: duplicate (merge)"
    )
    assert closing(row("recycled", reason="stale", recycle_policy="recycle")) == (
        "recycled to marketing: stale"
    )
    assert closing(row("converted", converted_to="sql")) == "converted to sql"
