"""The board's pure parts: clocks, durations, actions, bars, the playbook in words, rendering."""

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.handoff.board.access import EVERY_SCOPE, HANDOFFS_READ, Viewer, board_viewer
from services.handoff.board.endpoints import templates
from services.handoff.board.views import (
    actions_for,
    bars,
    describe_condition,
    duration,
    percent,
    period,
    playbook_view,
    rep_rows,
    running_clock,
    timeline,
)
from services.handoff.routing import RepLoad
from shared.errors import Forbidden, Invalid, Unauthorized
from shared.playbook import load_playbook
from shared.playbook.handoff import WorkingHours
from shared.playbook.scoring_rules import Condition
from shared.settings import REPO_ROOT

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")


def handoff(status: str = "assigned", **values):
    assigned = NOW - timedelta(minutes=1)
    return {
        "handoff_id": "h1",
        "lead_key": "email:ana@acme.example",
        "email": "ana@acme.example",
        "status": status,
        "assigned_at": assigned,
        "warn_at": assigned + timedelta(minutes=3),
        "accept_by": assigned + timedelta(minutes=5),
        "contact_by": assigned + timedelta(minutes=15),
        "created_at": assigned,
        **values,
    }


def test_the_accept_clock_runs_while_assigned_and_warns_then_breaches():
    h = handoff()
    clock = running_clock(h, NOW, 0.6)
    assert clock and (clock.name, clock.seconds_left, clock.state) == ("accept", 240, "ok")
    assert running_clock(h, NOW + timedelta(minutes=2), 0.6).state == "warning"
    late = running_clock(h, NOW + timedelta(minutes=5), 0.6)
    assert (late.state, late.seconds_left) == ("breached", -60)


def test_the_contact_clock_runs_once_accepted_and_no_clock_after_contact():
    clock = running_clock(handoff("accepted"), NOW, 0.6)
    assert clock and clock.name == "contact" and clock.seconds_left == 14 * 60
    # warns at 60% of the 15 minutes from assignment
    assert clock.warn_at == handoff()["assigned_at"] + timedelta(minutes=9)
    assert running_clock(handoff("contacted"), NOW, 0.6) is None
    assert running_clock(handoff("queued", accept_by=None, assigned_at=None), NOW, 0.6) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (59, "0:59"),
        (299, "4:59"),
        (3600, "1h 00m"),
        (3725, "1h 02m"),
        (90000, "1d 1h"),
        (-12, "-0:12"),
    ],
)
def test_durations_read_like_a_wall_clock(seconds, text):
    assert duration(seconds) == text


def test_actions_follow_the_api_transitions():
    assert actions_for("assigned") == ["accept", "contact", "reject"]
    assert actions_for("accepted") == ["contact", "reject", "convert"]
    assert actions_for("converted") == ["convert"]  # conversion moves forward
    assert actions_for("rejected") == []


def test_bars_scale_to_the_largest_value_or_to_a_given_maximum():
    assert [b.width_pct for b in bars([("a", 10, ""), ("b", 5, ""), ("c", 0, "")])] == [
        100.0,
        50.0,
        0.0,
    ]
    assert [b.width_pct for b in bars([("hot", 0.5, "")], scale_max=1.0)] == [50.0]
    assert bars([("none", 0, "")])[0].width_pct == 0.0
    assert (percent(None), percent(0.956)) == ("–", "96%")


def test_conditions_and_the_playbook_read_as_words():
    assert describe_condition(Condition(gte=200)) == "at least 200"
    assert describe_condition(Condition.model_validate({"in": ["a", "b"]})) == "is one of a, b"
    view = playbook_view(PLAYBOOK)
    assert view["mql_threshold"] == 50
    assert {
        "name": "competitor",
        "when": "email_domain is one of rival.example",
        "effect": "disqualifies the lead",
    } in view["fit"]
    assert view["tiers"][0]["sla"].accept_minutes == 5


def rep(rep_id="r1", name="Dora", open_handoffs=0, capacity=1, available=True, hours=None):
    working_hours = WorkingHours.model_validate(hours) if hours else None
    return RepLoad(rep_id, name, "t", 1, 0, True, open_handoffs, capacity, available, working_hours)


def test_reps_show_load_and_whether_they_work_now():
    berlin = {"timezone": "Europe/Berlin", "days": ["mon"], "start": "08:00", "end": "18:00"}
    dora = rep(open_handoffs=5, capacity=10, hours=berlin)
    eli = rep("r2", "Eli", open_handoffs=12, capacity=10, available=False)
    rows = rep_rows([dora, eli], NOW)  # a Monday, 10:00 in Berlin
    assert (rows[0].load_pct, rows[0].in_hours_now) == (50.0, True)
    assert rows[0].hours == "Mon 08:00–18:00 (Europe/Berlin)"
    assert (rows[1].load_pct, rows[1].hours, rows[1].in_hours_now) == (100.0, "any time", True)
    assert rep_rows([dora], NOW + timedelta(hours=10))[0].in_hours_now is False


def test_a_period_is_whole_utc_days_and_refuses_a_reversed_one():
    start, end = period(date(2026, 11, 1), date(2026, 11, 23), date(2026, 11, 23))
    assert (start, end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC))
    assert period(None, None, date(2026, 11, 30))[0] == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(Invalid) as error:
        period(date(2026, 11, 2), date(2026, 11, 1), date(2026, 11, 23))
    assert error.value.errors[0]["pointer"] == "/since"


def test_the_timeline_tells_the_story_in_order():
    h = {
        **handoff("rejected"),
        "rep_id": "rep-ana",
        "rep_name": "Ana",
        "queue": None,
        "routing_reason": "fair rotation",
        "accepted_at": NOW,
        "contacted_at": None,
        "closed_at": NOW + timedelta(minutes=1),
        "reason": "no_budget",
        "converted_to": None,
    }
    demo = {"rule": "demo_request", "points": 40, "at": "2026-11-23T08:57:00+00:00"}
    transitions = [{"at": NOW - timedelta(minutes=2), "transition": "became_mql"}]
    items = timeline({"activities": [demo]}, [h], transitions)
    assert [text for _, text in items] == [
        "activity: demo_request (+40 points)",
        "stage: became mql",
        "handed to Ana (fair rotation)",
        "accepted by Ana",
        "rejected: no_budget",
    ]


def render_sla(viewer: Viewer) -> str:
    h = {
        **handoff(),
        "rep_id": "rep-ana",
        "rep_name": "Ana",
        "team": "sales",
        "tier": "hot",
        "score": 90,
        "breached": False,
        "reassignments": 0,
        "previous_reps": [],
        "queue": None,
        "clock": running_clock(handoff(), NOW, 0.6),
        "actions": actions_for("assigned"),
    }
    return templates.get_template("sla.html").render(
        now=NOW,
        open=[h],
        queues={},
        filters={"team": "", "tier": "", "rep_id": ""},
        teams=["sales"],
        tiers=["hot"],
        reps=[],
        rep_names={},
        authors=[("mgr-maya", "mgr-maya (manager, sales)")],
        reject_reasons=["no_budget"],
        conversion_stages=["sql"],
        viewer=viewer,
    )


def test_read_only_viewers_see_no_action_buttons():
    full = render_sla(Viewer(EVERY_SCOPE))
    assert 'data-action="accept"' in full and 'id="acting-as"' in full
    read_only = render_sla(Viewer(frozenset({HANDOFFS_READ})))
    assert "data-action" not in read_only and "Actions</th>" not in read_only
    assert "acting-as" not in read_only
    assert "4:00" in read_only  # the clock is still there


def test_rep_toggles_need_reps_write():
    reps = rep_rows([rep()], NOW)
    html = templates.get_template("reps.html")
    assert "data-availability" in html.render(now=NOW, reps=reps, viewer=Viewer(EVERY_SCOPE))
    viewer = Viewer(frozenset({HANDOFFS_READ}))
    assert "data-availability" not in html.render(now=NOW, reps=reps, viewer=viewer)


class Keys:
    """An authenticator as shared/auth.py shapes it: principal(bearer) -> name and scopes."""

    def __init__(self, scopes_by_key):
        self.scopes_by_key = scopes_by_key

    def principal(self, bearer):
        if bearer not in self.scopes_by_key:
            raise Unauthorized("unknown API key")
        return SimpleNamespace(name="k", scopes=frozenset(self.scopes_by_key[bearer]))


def board_request(authorization=None, authenticator=None):
    state = SimpleNamespace(**({"authenticator": authenticator} if authenticator else {}))
    headers = {"authorization": authorization} if authorization else {}
    return SimpleNamespace(app=SimpleNamespace(state=state), headers=headers)


async def test_the_board_follows_the_api_keys_and_their_scopes():
    keys = Keys(
        {
            "viewer": [HANDOFFS_READ],
            "rep": [HANDOFFS_READ, "feedback:write"],
            "boss": ["admin"],
            "ingest": ["events:write"],
        }
    )
    viewer = await board_viewer(board_request("Bearer viewer", keys))
    assert not viewer.may_give_feedback and not viewer.may_set_availability
    rep = await board_viewer(board_request("Bearer rep", keys))
    assert rep.may_give_feedback and not rep.may_set_availability
    boss = await board_viewer(board_request("Bearer boss", keys))
    assert boss.may_give_feedback and boss.may_set_availability
    with pytest.raises(Forbidden):
        await board_viewer(board_request("Bearer ingest", keys))
    with pytest.raises(Unauthorized):
        await board_viewer(board_request(None, keys))
    # a service that checks no keys (as the API on main) leaves the board as open as the API
    assert (await board_viewer(board_request())).may_set_availability
