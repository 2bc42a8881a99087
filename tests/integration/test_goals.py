"""Goals over seeded history on a real database: exact figures, a playbook change mid-period,
GET /v1/goals, status changes published once through the outbox, and a failing goal that
does not stop the others.

November 2026, as of Monday the 23rd at noon (22.5 of 30 days gone). Playbook A was in force
until the 20th (hot: accept within 5 minutes, MQL target 20); playbook B since (hot: accept
within 10 minutes, MQL target 24). Each handoff keeps the deadline it was given.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.handoff import goals_repository, repository
from services.handoff.app import build_app
from services.handoff.goals_service import GOALS_CHECK, GoalsJob, evaluate, evaluate_period
from services.handoff.service import HandoffService
from shared import timers
from shared.db import db_now, make_engine, make_sessionmaker, outbox
from shared.events import CloudEvent, FeedbackData, LifecycleData
from shared.goal_events import GOAL_STATUS_CHANGED
from shared.playbook import Playbook, parse_playbook
from shared.settings import REPO_ROOT
from shared.timers import TimerRunner

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHANGED_AT = datetime(2026, 11, 20, tzinfo=UTC)
EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
GOALS = """
goals:
  - { id: mqls, metric: mqls, period: month, target: %(mqls)s }
  - { id: accept, metric: accept_sla, period: month, target: 0.9 }
  - { id: contact, metric: contact_sla, period: month, target: 0.9 }
  - { id: acceptance, metric: mql_acceptance_rate, period: month, target: 0.8 }
  - { id: to-sql, metric: mql_to_sql, period: month, target: 0.25 }
  - { id: sqls, metric: sqls, period: month, target: 8 }
  - { id: pipeline, metric: pipeline, period: month, target: 40000 }
  - { id: revenue, metric: revenue, period: month, target: 20000, currency: EUR }
"""


def book(accept_minutes: int, mqls: int) -> Playbook:
    text = EXAMPLE.split("\n# Shared goals")[0]
    text = text.replace(
        "hot: { accept_minutes: 5, contact_minutes: 15 }",
        f"hot: {{ accept_minutes: {accept_minutes}, contact_minutes: 15 }}",
    )
    return parse_playbook(text + GOALS % {"mqls": mqls})


A, B = book(5, 20), book(10, 24)


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def qualify(sessions: Any, service: HandoffService, email: str, at: datetime) -> str:
    lead = LifecycleData(
        transition="became_mql",
        lead_key=f"email:{email}",
        email=email,
        stage="mql",
        score=90,
        tier="hot",
        qualifying_activity_at=at,
    )
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="tests",
        type="leadrouter.lifecycle.became_mql",
        time=at,
        subject=lead.lead_key,
        data=lead.model_dump(mode="json"),
    )
    async with sessions() as s, s.begin():
        await repository.record_funnel_event(s, event.id, lead.lead_key, "became_mql", at)
        await service.route(s, event, lead, at)
        (handoff,) = [
            h
            for h in await repository.list_handoffs(s, None, None, None, None, 1000)
            if h.email == email
        ]
    return handoff.handoff_id


async def feedback(
    sessions: Any, service: HandoffService, action: str, hid: str, at: datetime, **body: Any
) -> None:
    async with sessions() as s, s.begin():
        rep = (await repository.get_handoff(s, hid)).rep_id  # type: ignore[union-attr]
        await service.apply_feedback(
            s, action, FeedbackData(handoff_id=hid, rep_id=rep, **body), at, cause=str(at)
        )


async def seed(sessions: Any) -> None:
    """Ten MQLs under playbook A, five under B, one before the month, one merged duplicate."""
    a, b = HandoffService(A, "t.h", "t.f"), HandoffService(B, "t.h", "t.f")
    async with sessions() as s, s.begin():
        await repository.sync_roster(s, A)
    old = datetime(2026, 10, 30, 10, tzinfo=UTC)
    await qualify(sessions, a, "october@acme.example", old)  # before the period
    days = [2, 3, 4, 5, 6, 9, 10, 11, 12, 13]
    for n, day in enumerate(days, 1):
        at = datetime(2026, 11, day, 10, tzinfo=UTC)
        hid = await qualify(sessions, a, f"a{n}@acme.example", at)
        if n <= 6:  # accepted in time
            await feedback(sessions, a, "accept", hid, at + timedelta(minutes=3))
        elif n <= 8:  # accepted 7 minutes in: late under A's 5 (in time under B's 10)
            await feedback(sessions, a, "accept", hid, at + timedelta(minutes=7))
        else:
            await feedback(
                sessions, a, "reject", hid, at + timedelta(minutes=2), reason="not_a_fit"
            )
        if n <= 3:
            await feedback(sessions, a, "convert", hid, at + timedelta(days=1), converted_to="sql")
            async with sessions() as s, s.begin():
                await repository.record_funnel_event(
                    s,
                    str(uuid.uuid4()),
                    f"email:a{n}@acme.example",
                    "became_sql",
                    at + timedelta(days=1),
                )
    # what the deals are worth (EUR is the example's reporting currency; USD is not counted)
    deals = [
        ("a1", "opportunity", "10000", None, 2),
        ("a1", "customer", "8000", "EUR", 3),
        ("a2", "opportunity", "5000", "USD", 2),
        ("a3", "opportunity", "2500", None, 2),
    ]
    async with sessions() as s:
        rows = await repository.list_handoffs(s, None, None, None, None, 1000)
    ids = {h.email.split("@")[0]: (h.handoff_id, h.assigned_at) for h in rows if h.email}
    for who, stage, amount, currency, days_later in deals:
        hid, assigned = ids[who]
        assert assigned is not None
        await feedback(
            sessions,
            a,
            "convert",
            hid,
            assigned + timedelta(days=days_later),
            converted_to=stage,
            amount=amount,
            currency=currency,
        )
    times = [(20, 10), (20, 11), (21, 10), (22, 10)]
    for n, (day, hour) in enumerate(times, 1):
        at = datetime(2026, 11, day, hour, tzinfo=UTC)
        hid = await qualify(sessions, b, f"b{n}@acme.example", at)
        await feedback(sessions, b, "accept", hid, at + timedelta(minutes=7))
        if n == 1:
            await feedback(sessions, b, "contact", hid, at + timedelta(minutes=12))
        if n == 2:
            await feedback(sessions, b, "contact", hid, at + timedelta(minutes=30))
    await qualify(sessions, b, "b5@acme.example", NOW - timedelta(minutes=3))  # undecided
    async with sessions() as s, s.begin():  # b4 turned out to have a second record
        await repository.record_merges(s, "email:b4@acme.example", ["email:b4-dup@acme.example"])
        await repository.record_funnel_event(
            s,
            str(uuid.uuid4()),
            "email:b4-dup@acme.example",
            "became_mql",
            datetime(2026, 11, 22, 9, tzinfo=UTC),
        )


def figures(progresses: list[Any]) -> dict[str, tuple[Any, ...]]:
    return {
        p.goal_id: (p.actual, p.expected, p.projection, p.gap, str(p.status)) for p in progresses
    }


async def test_exact_goal_figures_over_a_month_crossing_a_playbook_change(sessions):
    await seed(sessions)
    async with sessions() as s:
        under_b = await evaluate(s, list(B.goals), NOW)
        under_a = await evaluate(s, list(A.goals), NOW)
    assert figures(under_b) == {
        # 15 people (October's lead out, b4's duplicate once); target 24 over 22.5 of 30 days
        "mqls": (15, 18.0, 20.0, -3.0, "at_risk"),
        # 10 met, 2 breached (a7, a8 late under the 5 minutes they were given), b5 undecided
        "accept": (0.8333, 0.9, 0.8333, -0.0667, "at_risk"),
        # b1 in time; b2 late; a4-a8, b3, b4 accepted and past their contact deadline
        "contact": (0.1111, 0.9, 0.1111, -0.7889, "off_track"),
        # 12 accepted of 14 decided (a9, a10 rejected)
        "acceptance": (0.8571, 0.8, 0.8571, 0.0571, "on_track"),
        # 3 converted of the 15 handoffs assigned in November
        "to-sql": (0.2, 0.25, 0.2, -0.05, "at_risk"),
        "sqls": (3, 6.0, 4.0, -3.0, "off_track"),
        # EUR 10,000 + 2,500 to opportunity (the USD 5,000 deal is another currency)
        "pipeline": (12500, 30000.0, 16666.67, -17500.0, "off_track"),
        "revenue": (8000, 15000.0, 10666.67, -7000.0, "off_track"),
    }
    # the goal in force at `now` applies to the whole month: under A the same 15 are on track
    assert figures(under_a)["mqls"] == (15, 15.0, 20.0, 0.0, "on_track")
    assert figures(under_a)["accept"] == figures(under_b)["accept"]
    # November seen from December 1st: over, and nothing came after the 23rd: missed
    async with sessions() as s:
        (end,) = await evaluate_period(s, list(B.goals)[:1], datetime(2026, 12, 1, tzinfo=UTC), NOW)
    assert (end.actual, end.expected, str(end.status)) == (15, 24, "missed")


async def test_get_goals_answers_the_same_figures_and_where_the_gap_sits(settings, sessions):
    await seed(sessions)
    app = build_app(settings, B)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://handoff"
    ) as http:
        body = (await http.get("/v1/goals", params={"at": NOW.isoformat()})).json()
        sales = await http.get("/v1/goals", params={"at": NOW.isoformat(), "owner": "sales"})
        naive = await http.get("/v1/goals", params={"at": "2026-11-23T12:00:00"})
        finance = await http.get("/v1/goals", params={"owner": "finance"})
    await app.state.runtime.engine.dispose()
    by_id = {g["goal_id"]: g for g in body["goals"]}
    assert (by_id["mqls"]["actual"], by_id["mqls"]["status"], by_id["mqls"]["owner"]) == (
        15,
        "at_risk",
        "marketing",
    )
    assert by_id["accept"]["value"] == 10 and by_id["accept"]["out_of"] == 12
    assert body["gap_stage"] == "contacted"  # contact SLA: 88% short of what it implies
    assert [g["goal_id"] for g in sales.json()["goals"]] == ["accept", "contact"]
    assert (naive.status_code, naive.json()["errors"][0]["pointer"]) == (422, "/query/at")
    assert (finance.status_code, finance.json()["errors"][0]["pointer"]) == (422, "/query/owner")


async def goal_events(sessions: Any) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = (await s.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
        events = [json.loads(v) for v in rows]
    return [e for e in events if e["type"] == GOAL_STATUS_CHANGED]


async def test_a_status_change_is_published_once_through_the_outbox(sessions):
    await seed(sessions)
    before = len(await goal_events(sessions))
    job_b = GoalsJob(B, "t.goals")
    async with sessions() as s, s.begin():
        await job_b.check(s, NOW)
    first = (await goal_events(sessions))[before:]
    assert {e["data"]["goal_id"]: e["data"]["status"] for e in first} == {
        "mqls": "at_risk",
        "accept": "at_risk",
        "contact": "off_track",
        "acceptance": "on_track",
        "to-sql": "at_risk",
        "sqls": "off_track",
        "pipeline": "off_track",
        "revenue": "off_track",
    }
    assert {e["subject"] for e in first} >= {"goal:mqls"}
    assert all(e["data"]["previous_status"] is None for e in first)
    async with sessions() as s, s.begin():  # nothing changed: nothing published
        await job_b.check(s, NOW + timedelta(minutes=1))
    assert len(await goal_events(sessions)) == before + 8
    async with sessions() as s, s.begin():  # back to A's target: MQLs on track again
        await GoalsJob(A, "t.goals").check(s, NOW)
    (change,) = (await goal_events(sessions))[before + 8 :]
    assert (change["data"]["goal_id"], change["data"]["previous_status"]) == ("mqls", "at_risk")
    assert change["data"]["status"] == "on_track"
    assert (
        REGISTRY.get_sample_value(
            "leadrouter_goal_status", {"goal": "mqls", "owner": "marketing", "status": "on_track"}
        )
        == 1
    )


async def test_a_goal_that_fails_does_not_stop_the_others(sessions, monkeypatch):
    await seed(sessions)
    real = goals_repository.tally

    async def broken(session, goal, period, now):
        if goal.id == "contact":
            await session.execute(select(1 / 0))  # the database refuses: a real error
        return await real(session, goal, period, now)

    monkeypatch.setattr(goals_repository, "tally", broken)
    failures = (
        REGISTRY.get_sample_value("leadrouter_goal_check_failures_total", {"goal": "contact"})
        or 0.0
    )
    async with sessions() as s, s.begin():
        done = await GoalsJob(B, "t.goals").check(s, NOW)
    assert [p.goal_id for p in done] == [
        "mqls",
        "accept",
        "acceptance",
        "to-sql",
        "sqls",
        "pipeline",
        "revenue",
    ]
    assert (
        REGISTRY.get_sample_value("leadrouter_goal_check_failures_total", {"goal": "contact"})
        == failures + 1
    )
    async with sessions() as s:
        saved = await goals_repository.statuses(s)
    assert {goal for goal, _ in saved} == {
        "mqls",
        "accept",
        "acceptance",
        "to-sql",
        "sqls",
        "pipeline",
        "revenue",
    }


async def test_the_check_is_a_durable_timer_that_sets_itself_again(sessions):
    job = GoalsJob(B, "t.goals", interval_s=60)
    async with sessions() as s, s.begin():
        await job.start(s, NOW)
        await job.start(s, NOW + timedelta(hours=1))  # already set: left as it is
    async with sessions() as s:
        first = await timers.find(s, GOALS_CHECK, "all")
    assert first is not None and first.due_at == NOW
    runner = TimerRunner(sessions, job.timer_handlers(), kind_prefix="handoff.")
    assert await runner.fire_due() == 1
    async with sessions() as s:
        again = await timers.find(s, GOALS_CHECK, "all")
        fired_at = await db_now(s)
    assert again is not None and fired_at < again.due_at <= fired_at + timedelta(seconds=60)
    assert {e["data"]["goal_id"] for e in await goal_events(sessions)} == {g.id for g in B.goals}
    # goals taken out of the playbook: the check left behind fires once and is not set again
    async with sessions() as s, s.begin():
        await timers.schedule(s, GOALS_CHECK, "all", NOW)
    none = GoalsJob(book(10, 24).model_copy(update={"goals": []}), "t.goals")
    assert (
        await TimerRunner(sessions, none.timer_handlers(), kind_prefix="handoff.").fire_due() == 1
    )
    async with sessions() as s:
        assert await timers.find(s, GOALS_CHECK, "all") is None


async def test_the_weekly_report_of_a_past_week_over_the_seeded_month(sessions):
    from services.handoff.report import weekly_report

    await seed(sessions)
    async with sessions() as s:
        report = await weekly_report(s, B, NOW, week_of=datetime(2026, 11, 18, tzinfo=UTC))
    assert report.week == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    # b1-b4 this week (b4's duplicate once); a6-a10 the week before
    assert (report.funnel["mqls"], report.last_funnel["mqls"]) == (4, 5)
    assert report.funnel["sla"]["ratio"] == 1.0 and report.contact_sla == (1, 4)
    assert report.acceptance == (4, 4)
    assert report.reasons() == [] and report.last_funnel["rejected_by_reason"] == {"not_a_fit": 2}
    # the goals as they stood when the week ended: 14 people by then, 22 of 30 days gone
    mqls = next(g for g in report.goals if g.goal_id == "mqls")
    assert (mqls.actual, mqls.expected, mqls.projection, str(mqls.status)) == (
        14,
        17.6,
        19.09,
        "at_risk",
    )
    markdown = report.markdown()
    assert "| mqls | 4 | 5 | -20% |" in markdown
    assert "| sales | First contact within the SLA | 25.0% | 1 of 4 |" in markdown
    row = "| mqls per month | marketing | month | 14 | 24 | 17.6 | 19.09 | -3.6 | at_risk |"
    assert row in markdown
    assert markdown.startswith("# Smarketing weekly: 2026-11-16 to 2026-11-22\n")
    assert set(report.charts) == {"goals", "funnel"}
