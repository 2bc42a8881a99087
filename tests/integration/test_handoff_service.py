"""The handoff service in process on a database cloned from the template.

Handlers and timers are called directly with a given `now`, so SLA breaches, reassignment,
escalation and queue draining are tested without waiting for a real clock.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from services.handoff import repository
from services.handoff.app import build_app
from services.handoff.lifecycle import Handoff, HandoffStatus
from services.handoff.service import (
    ACCEPT_BREACH,
    CONTACT_BREACH,
    QUEUE_CHECK,
    WARNING,
    HandoffService,
)
from shared import timers
from shared.db import make_engine, make_sessionmaker, outbox
from shared.errors import LeadrouterError, Unavailable
from shared.events import CloudEvent, FeedbackData, LifecycleData
from shared.playbook import Playbook, parse_playbook
from shared.settings import REPO_ROOT
from shared.timers import Timer, TimerRunner, pending

pytestmark = pytest.mark.integration

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
SALES_REPS = """\
        - { id: rep-ana, name: Ana Lima, email: ana@example.com, capacity: 20 }
        - { id: rep-ben, name: Ben Okafor, email: ben@example.com, capacity: 20 }
        - { id: rep-chen, name: Chen Wei, email: chen@example.com, capacity: 20 }
"""


def playbook(sales_reps: str = SALES_REPS, replace: dict[str, str] | None = None) -> Playbook:
    """The example playbook with the sales team's reps (and any other text) replaced."""
    text = EXAMPLE.replace(SALES_REPS, sales_reps)
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_playbook(text)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Desk:
    """The handoff service on its own database, driven by hand."""

    sessions: Any
    service: HandoffService

    async def qualify(
        self,
        email: str,
        now: datetime,
        tier: str = "hot",
        merged_keys: tuple[str, ...] = (),
        qualified_at: datetime | None = None,
    ) -> str:
        lead = LifecycleData(
            transition="became_mql",
            lead_key=f"email:{email}",
            email=email,
            stage="mql",
            score=90,
            tier=tier,
            qualifying_activity_at=qualified_at or now,
            merged_keys=list(merged_keys),
        )
        event = CloudEvent(
            id=str(uuid.uuid4()),
            source="tests",
            type="leadrouter.lifecycle.became_mql",
            time=now,
            subject=lead.lead_key,
            data=lead.model_dump(mode="json"),
        )
        async with self.sessions() as s, s.begin():
            await repository.record_merges(s, lead.lead_key, lead.merged_keys)
            await repository.record_funnel_event(s, event.id, lead.lead_key, "became_mql", now)
            await self.service.route(s, event, lead, now)
        return (await self.by_email(email)).handoff_id

    async def transition(self, lead_key: str, transition: str, at: datetime, merged=()) -> None:
        async with self.sessions() as s, s.begin():
            await repository.record_merges(s, lead_key, list(merged))
            await repository.record_funnel_event(s, str(uuid.uuid4()), lead_key, transition, at)

    async def by_email(self, email: str) -> Handoff:
        async with self.sessions() as s:
            rows = await repository.list_handoffs(s, None, None, None, None, 1000)
        (found,) = [h for h in rows if h.email == email]
        return found

    async def get(self, handoff_id: str) -> Handoff:
        async with self.sessions() as s:
            handoff = await repository.get_handoff(s, handoff_id)
        assert handoff is not None
        return handoff

    async def fire(self, kind: str, key: str, now: datetime) -> None:
        handler = self.service.timer_handlers()[kind]
        async with self.sessions() as s, s.begin():
            await timers.cancel(s, kind, key)  # as the runner does: claimed, deleted, fired
            await handler(s, Timer(kind, key, now, {}), now)

    async def feedback(self, action: str, handoff_id: str, now: datetime, **body: Any) -> Handoff:
        async with self.sessions() as s, s.begin():
            return await self.service.apply_feedback(
                s, action, FeedbackData(handoff_id=handoff_id, **body), now, cause=str(now)
            )

    async def availability(self, rep_id: str, available: bool, now: datetime) -> tuple[int, int]:
        async with self.sessions() as s, s.begin():
            return await self.service.set_availability(s, rep_id, available, now)

    async def set_ledgers(self, **ledgers: int) -> None:
        async with self.sessions() as s, s.begin():
            for rep_id, total in ledgers.items():
                await s.execute(
                    update(repository.reps)
                    .where(repository.reps.c.rep_id == rep_id.replace("_", "-"))
                    .values(assigned_total=total)
                )

    async def reps(self) -> dict[str, Any]:
        async with self.sessions() as s:
            return {r.rep_id: r for r in await repository.list_reps(s)}

    async def events(self, handoff_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        async with self.sessions() as s:
            rows = (await s.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
            events = [json.loads(v) for v in rows]
        return [
            (e["type"].removeprefix("leadrouter.handoff."), e["data"])
            for e in events
            if handoff_id is None or e["data"]["handoff_id"] == handoff_id
        ]

    async def funnel(self, now: datetime) -> dict[str, Any]:
        from services.handoff.endpoints import funnel_out

        since, until = now - timedelta(days=1), now + timedelta(days=1)
        async with self.sessions() as s:
            raw = await repository.funnel(s, since, until, now)
        return funnel_out(raw, since, until).model_dump()


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def desk_for(sessions, book: Playbook) -> Desk:
    async with sessions() as s, s.begin():
        await repository.sync_roster(s, book)
    return Desk(sessions, HandoffService(book, "test.handoffs", "test.feedback"))


# -- issue 9: SLA breach, reassignment and escalation in process -----------------------------


async def test_accept_breach_reassigns_then_escalates(sessions):
    desk = await desk_for(
        sessions, playbook(replace={"max_reassignments: 2": "max_reassignments: 1"})
    )
    before = sample("leadrouter_sla_outcomes_total", team="sales", tier="hot", outcome="breached")
    hid = await desk.qualify("slow@acme.example", MONDAY_NOON)
    first = await desk.get(hid)
    assert first.status == HandoffStatus.ASSIGNED
    assert first.accept_by == MONDAY_NOON + timedelta(minutes=5)
    await desk.fire(WARNING, hid, first.warn_at)
    await desk.fire(ACCEPT_BREACH, hid, first.accept_by)
    second = await desk.get(hid)
    assert second.status == HandoffStatus.ASSIGNED and second.rep_id != first.rep_id
    assert second.previous_reps == (first.rep_id,)
    assert second.accept_by == first.accept_by + timedelta(minutes=5)  # a fresh clock
    await desk.fire(ACCEPT_BREACH, hid, second.accept_by)
    third = await desk.get(hid)
    assert (third.status, third.rep_id, third.queue) == ("escalated", None, "sales-manager")
    assert third.accept_breaches == 2
    kinds = [k for k, _ in await desk.events(hid)]
    assert kinds == [
        "assigned",
        "sla_warning",
        "sla_breached",
        "reassigned",
        "sla_warning",  # the second rep's warning was due too: sent before their breach
        "sla_breached",
        "reassigned",
    ]
    events = dict(await desk.events(hid))
    assert events["sla_breached"]["clock"] == "accept"
    after = sample("leadrouter_sla_outcomes_total", team="sales", tier="hot", outcome="breached")
    assert after - before == 2
    async with sessions() as s:
        left = {(t.kind, t.key) for t in await pending(s, [WARNING, ACCEPT_BREACH, CONTACT_BREACH])}
    assert left == set()  # an escalated lead has no rep and no clock


async def test_a_breach_fired_before_its_overdue_warning_publishes_the_warning_first(sessions):
    # With two instances behind on timers, one may fire the breach while the other still
    # holds the warning: the warning must not be lost (make chaos found 35 of them).
    desk = await desk_for(sessions, playbook())
    hid = await desk.qualify("late@acme.example", MONDAY_NOON)
    first = await desk.get(hid)
    await desk.fire(ACCEPT_BREACH, hid, first.accept_by)  # the warning has not fired yet
    kinds = [k for k, _ in await desk.events(hid)]
    assert kinds[:4] == ["assigned", "sla_warning", "sla_breached", "reassigned"]
    warning = dict(await desk.events(hid))["sla_warning"]
    assert warning["rep_id"] == first.rep_id  # the rep whose clock ran, not the next one
    second = await desk.get(hid)
    async with sessions() as s:
        left = {(t.kind, t.key): t.due_at for t in await pending(s, [WARNING])}
    assert left == {(WARNING, hid): second.warn_at}  # the next rep's warning, still to come


# -- SLA timers through the runner: one warning and one breach per assignment ----------------


def runner_for(
    desk: Desk, replaced: dict[str, timers.TimerHandler] | None = None, batch_max: int = 100
) -> TimerRunner:
    """The runner over the service's timers (retried at once), some handlers replaced."""
    handlers = {**desk.service.timer_handlers(), **(replaced or {})}
    return TimerRunner(
        desk.sessions, handlers, kind_prefix="handoff.", batch_max=batch_max, retry_base_s=0.0
    )


async def bring_due(desk: Desk, handoff_id: str) -> None:
    """The handoff's SLA timers come due now (a runner that fell behind)."""
    async with desk.sessions() as s, s.begin():
        await s.execute(
            update(timers.timers)
            .where(timers.timers.c.key == handoff_id)
            .values(due_at=timers.timers.c.due_at - timedelta(days=1))
        )


async def sla_event_ids(desk: Desk, handoff_id: str) -> dict[tuple[datetime, str], set[str]]:
    """The distinct ids of each assignment's (accept_by) warnings and breaches, as make chaos
    counts them (harness/reconcile.py)."""
    async with desk.sessions() as s:
        rows = (await s.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
        events = [json.loads(v) for v in rows]
    ids: dict[tuple[datetime, str], set[str]] = {}
    for e in events:
        kind = e["type"].rsplit(".", 1)[-1]
        if e["data"]["handoff_id"] == handoff_id and kind in {"sla_warning", "sla_breached"}:
            accept_by = datetime.fromisoformat(e["data"]["accept_by"])
            ids.setdefault((accept_by, kind), set()).add(e["id"])
    return ids


async def test_a_runner_behind_sends_each_assignments_warning_and_breach_once(sessions):
    # A runner more than the contact window behind claims an assignment's warning, accept
    # breach and contact breach in one batch. The accept breach reassigns the lead; the contact
    # breach claimed with it was the previous rep's clock and must not breach the next rep's
    # (make chaos: the next assignment had two breaches, a contact and an accept one).
    desk = await desk_for(
        sessions, playbook(replace={"max_reassignments: 2": "max_reassignments: 1"})
    )
    hid = await desk.qualify("behind@acme.example", MONDAY_NOON)  # hours ago: all three due
    first = await desk.get(hid)
    runner = runner_for(desk)
    assert await runner.fire_due() == 2  # the contact breach was cancelled by the breach
    second = await desk.get(hid)
    assert second.status == HandoffStatus.ASSIGNED and second.rep_id != first.rep_id
    await bring_due(desk, hid)  # the next rep's clock runs out too
    await runner.fire_due()
    assert (await desk.get(hid)).status == HandoffStatus.ESCALATED
    kinds = [(k, d.get("clock")) for k, d in await desk.events(hid)]
    assert kinds == [
        ("assigned", None),
        ("sla_warning", None),
        ("sla_breached", "accept"),
        ("reassigned", None),
        ("sla_warning", None),
        ("sla_breached", "accept"),
        ("reassigned", None),
    ]
    ids = await sla_event_ids(desk, hid)
    assert sorted(ids) == sorted(
        (a.accept_by, k) for a in (first, second) for k in ("sla_warning", "sla_breached")
    )
    assert all(len(one) == 1 for one in ids.values()), ids


async def test_a_warning_retried_after_a_failure_is_one_event_for_its_assignment(sessions):
    # The warning's first attempt fails (a deadlock under load) and the retry moves its due
    # time past the breach's. The breach, fired first, sends the overdue warning; the warning
    # timer claimed in the same batch then belongs to a reassigned lead. Each assignment still
    # has one warning and one breach, and their ids do not depend on when they were retried.
    desk = await desk_for(sessions, playbook())
    hid = await desk.qualify("retried@acme.example", MONDAY_NOON)
    first = await desk.get(hid)
    fails = [Unavailable("deadlock detected (injected)")]
    real = desk.service.on_warning

    async def warning_fails_once(session, timer, now):
        if fails:
            raise fails.pop()
        await real(session, timer, now)

    runner = runner_for(desk, {WARNING: warning_fails_once})
    assert await runner_for(desk, {WARNING: warning_fails_once}, batch_max=1).fire_due() == 0
    async with sessions() as s:
        (retry,) = await pending(s, [WARNING])
    assert retry.due_at > first.accept_by  # due again after the breach
    await runner.fire_due()  # the breach, the contact breach and the retried warning
    second = await desk.get(hid)
    assert second.rep_id != first.rep_id
    await bring_due(desk, hid)
    await runner.fire_due()
    ids = await sla_event_ids(desk, hid)
    for assignment in (first, second):
        for kind in ("sla_warning", "sla_breached"):
            assert len(ids.get((assignment.accept_by, kind), ())) == 1, (kind, ids)
    assert len(ids) == 4, ids


# -- issue 11, item 1: the queue drains whenever a slot frees ---------------------------------


async def test_escalation_releases_the_fallback_queue(sessions):
    only_ana = "        - { id: rep-ana, name: Ana Lima, email: ana@example.com, capacity: 1 }\n"
    desk = await desk_for(sessions, playbook(only_ana))
    one = await desk.qualify("one@acme.example", MONDAY_NOON)
    two = await desk.qualify("two@acme.example", MONDAY_NOON + timedelta(seconds=1))
    assert (await desk.get(two)).status == HandoffStatus.QUEUED
    deadline = (await desk.get(one)).accept_by
    await desk.fire(ACCEPT_BREACH, one, deadline)  # nobody else: escalated to the manager
    assert (await desk.get(one)).status == HandoffStatus.ESCALATED
    waiting = await desk.get(two)
    assert (waiting.status, waiting.rep_id) == ("assigned", "rep-ana")
    assert waiting.accept_by == deadline + timedelta(minutes=5)


async def test_a_reassignment_releases_the_fallback_queue(sessions):
    reps = (
        "        - { id: rep-ana, name: Ana Lima, capacity: 1 }\n"
        "        - { id: rep-ben, name: Ben Okafor, capacity: 1,\n"
        "            working_hours: { days: [mon], start: '12:00', end: '23:00' } }\n"
    )
    desk = await desk_for(sessions, playbook(reps))
    one = await desk.qualify("one@acme.example", MONDAY_NOON - timedelta(minutes=10))
    assert (await desk.get(one)).rep_id == "rep-ana"  # ben starts at noon
    two = await desk.qualify("two@acme.example", MONDAY_NOON - timedelta(minutes=6))
    assert (await desk.get(two)).status == HandoffStatus.QUEUED
    await desk.fire(ACCEPT_BREACH, one, MONDAY_NOON + timedelta(minutes=1))
    assert (await desk.get(one)).rep_id == "rep-ben"
    waiting = await desk.get(two)
    assert (waiting.status, waiting.rep_id) == ("assigned", "rep-ana")


async def test_a_queued_lead_goes_out_when_working_hours_begin(sessions):
    ana = (
        "        - { id: rep-ana, name: Ana Lima,\n"
        "            working_hours: { timezone: Europe/Berlin, days: [mon], start: '14:00',"
        " end: '18:00' } }\n"
    )
    desk = await desk_for(sessions, playbook(ana))
    hid = await desk.qualify("early@acme.example", MONDAY_NOON)  # 13:00 in Berlin
    assert (await desk.get(hid)).status == HandoffStatus.QUEUED
    async with sessions() as s:
        (check,) = await pending(s, [QUEUE_CHECK])
    assert (check.key, check.due_at) == ("sales", MONDAY_NOON + timedelta(hours=1))
    await desk.fire(QUEUE_CHECK, "sales", check.due_at)
    assigned = await desk.get(hid)
    assert (assigned.status, assigned.rep_id) == ("assigned", "rep-ana")
    assert "from the queue" in assigned.routing_reason


async def test_a_playbook_with_more_room_drains_the_queue_at_start_up(sessions):
    tight = "        - { id: rep-ana, name: Ana Lima, capacity: 1 }\n"
    desk = await desk_for(sessions, playbook(tight))
    await desk.qualify("one@acme.example", MONDAY_NOON)
    two = await desk.qualify("two@acme.example", MONDAY_NOON)
    assert (await desk.get(two)).status == HandoffStatus.QUEUED
    roomier = playbook(tight.replace("capacity: 1", "capacity: 2"))
    desk = await desk_for(sessions, roomier)  # the service restarts with the new playbook
    async with sessions() as s, s.begin():
        assert await desk.service.drain_queues(s, MONDAY_NOON) == 1
    assert (await desk.get(two)).rep_id == "rep-ana"


# -- items 2 and 3: new and returning reps are levelled -----------------------------------------


async def test_a_new_rep_starts_at_the_teams_rotation_level(sessions):
    desk = await desk_for(sessions, playbook())
    await desk.set_ledgers(rep_ana=20, rep_ben=20, rep_chen=20)
    await desk.qualify("a@acme.example", MONDAY_NOON)  # the rotation picks someone at 20
    grown = playbook(
        SALES_REPS + "        - { id: rep-dan, name: Dan Novo, email: dan@example.com }\n"
    )
    await desk_for(sessions, grown)
    assert (await desk.reps())["rep-dan"].assigned_total == 20
    desk = Desk(sessions, HandoffService(grown, "test.handoffs", "test.feedback"))
    winners = [
        (await desk.get(await desk.qualify(f"n{i}@acme.example", MONDAY_NOON))).rep_id
        for i in range(8)
    ]
    assert winners.count("rep-dan") <= 3  # not 8 in a row


async def test_a_returning_rep_is_levelled_against_reps_who_took_leads(sessions):
    weekend_only = (
        SALES_REPS
        + "        - { id: rep-wes, name: Wes Sun, working_hours: { days: [sat, sun] } }\n"
    )
    desk = await desk_for(sessions, playbook(weekend_only))
    await desk.set_ledgers(rep_ana=20, rep_ben=20, rep_chen=3, rep_wes=0)
    await desk.availability("rep-chen", False, MONDAY_NOON)
    for i in range(4):
        await desk.qualify(f"w{i}@acme.example", MONDAY_NOON)
    ledger, _ = await desk.availability("rep-chen", True, MONDAY_NOON)
    assert ledger >= 21  # level with ana and ben, not with wes at 0
    winners = [
        (await desk.get(await desk.qualify(f"r{i}@acme.example", MONDAY_NOON))).rep_id
        for i in range(9)
    ]
    assert winners.count("rep-chen") <= 4


# -- item 4: conversion moves forward ------------------------------------------------------


async def test_conversion_advances_sql_opportunity_customer(sessions):
    desk = await desk_for(sessions, playbook())
    hid = await desk.qualify("buyer@acme.example", MONDAY_NOON)
    rep = (await desk.get(hid)).rep_id
    await desk.feedback("accept", hid, MONDAY_NOON, rep_id=rep)
    for stage in ("sql", "opportunity", "customer"):
        moved = await desk.feedback("convert", hid, MONDAY_NOON, rep_id=rep, converted_to=stage)
        assert (moved.status, moved.converted_to) == ("converted", stage)
    with pytest.raises(LeadrouterError) as refused:
        await desk.feedback("convert", hid, MONDAY_NOON, rep_id=rep, converted_to="sql")
    assert refused.value.status == 409
    converted = [d["converted_to"] for k, d in await desk.events(hid) if k == "converted"]
    assert converted == ["sql", "opportunity", "customer"]


# -- item 5: feedback records who gave it, and only the rep or a manager may ----------------


async def test_feedback_is_refused_from_anyone_but_the_rep_or_a_manager(sessions):
    desk = await desk_for(sessions, playbook())
    hid = await desk.qualify("who@acme.example", MONDAY_NOON)
    owner = (await desk.get(hid)).rep_id
    other = next(r for r in ("rep-ana", "rep-ben") if r != owner)
    for rep_id, status, pointer in (
        (other, 403, "/rep_id"),
        ("rep-nobody", 422, "/rep_id"),
        (None, 422, "/rep_id"),
    ):
        with pytest.raises(LeadrouterError) as refused:
            await desk.feedback("accept", hid, MONDAY_NOON, rep_id=rep_id)
        assert (refused.value.status, refused.value.errors[0]["pointer"]) == (status, pointer)
    assert (await desk.get(hid)).status == HandoffStatus.ASSIGNED
    await desk.feedback("accept", hid, MONDAY_NOON, rep_id=owner)
    await desk.feedback("reject", hid, MONDAY_NOON, rep_id="mgr-maya", reason="no_budget")
    async with sessions() as s:
        rows = (
            await s.execute(
                select(
                    repository.handoff_feedback.c.action,
                    repository.handoff_feedback.c.rep_id,
                    repository.handoff_feedback.c.api_key_name,
                ).order_by(repository.handoff_feedback.c.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("accept", owner, None), ("reject", "mgr-maya", None)]


async def test_the_playbook_can_let_anyone_give_feedback(sessions):
    desk = await desk_for(
        sessions,
        playbook(
            replace={"  max_reassignments: 2": "  max_reassignments: 2\n  feedback_from: anyone"}
        ),
    )
    hid = await desk.qualify("open@acme.example", MONDAY_NOON)
    assert (await desk.feedback("accept", hid, MONDAY_NOON)).status == "accepted"


# -- item 6: attainment counts decided accept clocks, and agrees with the metric ------------


async def test_attainment_counts_only_decided_handoffs_and_agrees_with_the_metric(sessions):
    desk = await desk_for(sessions, playbook())
    labels = {"team": "sales", "tier": "hot"}
    met0 = sample("leadrouter_sla_outcomes_total", outcome="met", **labels)
    breached0 = sample("leadrouter_sla_outcomes_total", outcome="breached", **labels)
    # one accepted in time, four still inside their deadline
    ontime = await desk.qualify("ontime@acme.example", MONDAY_NOON)
    await desk.feedback("accept", ontime, MONDAY_NOON, rep_id=(await desk.get(ontime)).rep_id)
    for i in range(4):
        await desk.qualify(f"open{i}@acme.example", MONDAY_NOON)
    funnel = await desk.funnel(MONDAY_NOON + timedelta(minutes=1))
    assert funnel["sla"]["met"] == 1 and funnel["sla"]["undecided"] == 4
    assert funnel["sla_attainment"] == 1.0  # not 1/5
    # breached once, then accepted in time by the next rep: one met and one breached clock
    twice = await desk.qualify("twice@acme.example", MONDAY_NOON)
    deadline = (await desk.get(twice)).accept_by
    await desk.fire(ACCEPT_BREACH, twice, deadline)
    await desk.feedback("accept", twice, deadline, rep_id=(await desk.get(twice)).rep_id)
    # accepted in time, then never contacted: a contact breach is not an accept breach
    late_call = await desk.qualify("latecall@acme.example", MONDAY_NOON)
    await desk.feedback("accept", late_call, MONDAY_NOON, rep_id=(await desk.get(late_call)).rep_id)
    await desk.fire(CONTACT_BREACH, late_call, MONDAY_NOON + timedelta(minutes=15))
    funnel = await desk.funnel(MONDAY_NOON + timedelta(minutes=1))
    assert (funnel["sla"]["met"], funnel["sla"]["breached"]) == (3, 1)
    met = sample("leadrouter_sla_outcomes_total", outcome="met", **labels) - met0
    breached = sample("leadrouter_sla_outcomes_total", outcome="breached", **labels) - breached0
    assert (met, breached) == (3, 1)
    assert funnel["sla_attainment"] == round(met / (met + breached), 4)
    contact = [d for k, d in await desk.events(late_call) if k == "sla_breached"]
    assert [d["clock"] for d in contact] == ["contact"]


# -- item 7: reject reasons in the funnel and a metric ---------------------------------------


async def test_reject_reasons_are_in_the_funnel_and_a_metric(sessions):
    desk = await desk_for(sessions, playbook())
    before = sample("leadrouter_handoff_rejections_total", team="sales", reason="no_budget")
    for i, reason in enumerate(("no_budget", "no_budget", "bad_timing")):
        hid = await desk.qualify(f"r{i}@acme.example", MONDAY_NOON)
        rep = (await desk.get(hid)).rep_id
        await desk.feedback("reject", hid, MONDAY_NOON, rep_id=rep, reason=reason)
    funnel = await desk.funnel(MONDAY_NOON)
    assert funnel["rejected_by_reason"] == {"no_budget": 2, "bad_timing": 1}
    after = sample("leadrouter_handoff_rejections_total", team="sales", reason="no_budget")
    assert after - before == 2


# -- item 8: speed to lead includes leads assigned from the queue ------------------------------


async def test_speed_to_lead_is_observed_for_leads_assigned_from_the_queue(sessions):
    desk = await desk_for(sessions, playbook())
    for rep in ("rep-ana", "rep-ben", "rep-chen"):
        await desk.availability(rep, False, MONDAY_NOON)
    count0 = sample("leadrouter_speed_to_lead_seconds_count", tier="hot")
    sum0 = sample("leadrouter_speed_to_lead_seconds_sum", tier="hot")
    queued0 = sample("leadrouter_handoff_queued_seconds_count", tier="hot")
    await desk.availability("rep-chen", True, MONDAY_NOON)
    direct = await desk.qualify("direct@acme.example", MONDAY_NOON)  # straight to chen
    assert (await desk.get(direct)).rep_id == "rep-chen"
    assert sample("leadrouter_handoff_queued_seconds_count", tier="hot") == queued0
    await desk.availability("rep-chen", False, MONDAY_NOON)
    count0 = sample("leadrouter_speed_to_lead_seconds_count", tier="hot")
    sum0 = sample("leadrouter_speed_to_lead_seconds_sum", tier="hot")
    hid = await desk.qualify("queued@acme.example", MONDAY_NOON, qualified_at=MONDAY_NOON)
    assert (await desk.get(hid)).status == HandoffStatus.QUEUED
    await desk.availability("rep-ben", True, MONDAY_NOON + timedelta(minutes=30))
    assert (await desk.get(hid)).rep_id == "rep-ben"
    assert sample("leadrouter_speed_to_lead_seconds_count", tier="hot") - count0 == 1
    assert sample("leadrouter_speed_to_lead_seconds_sum", tier="hot") - sum0 == 1800
    assert sample("leadrouter_handoff_queued_seconds_count", tier="hot") - queued0 == 1


# -- item 10: a person merged from two leads counts once -----------------------------------


async def test_a_merged_person_counts_once_in_the_funnel(sessions):
    desk = await desk_for(sessions, playbook())
    await desk.transition("segment_anonymous:abc", "became_lead", MONDAY_NOON)
    await desk.transition(
        "email:pat@acme.example", "became_lead", MONDAY_NOON, merged=["segment_anonymous:abc"]
    )
    await desk.transition("email:sam@acme.example", "became_lead", MONDAY_NOON)
    assert (await desk.funnel(MONDAY_NOON))["leads"] == 2


# -- issue 10, item 13 and the HTTP layer: filters are validated, bodies are schemas ----------


@pytest.fixture
async def client(settings):
    app = build_app(settings, playbook())
    async with app.state.runtime.sessions() as s, s.begin():
        await repository.sync_roster(s, app.state.playbook)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://handoff") as http:
        yield http
    await app.state.runtime.engine.dispose()


@pytest.mark.parametrize(
    ("path", "params", "pointer"),
    [
        ("/v1/handoffs", {"status": "bogus"}, "/query/status"),
        ("/v1/handoffs", {"tier": "bogus"}, "/query/tier"),
        ("/v1/handoffs", {"team": "bogus"}, "/query/team"),
        (
            "/v1/funnel",
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "/query/since",
        ),
    ],
)
async def test_unknown_filters_answer_422_naming_the_parameter(client, path, params, pointer):
    response = await client.get(path, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == [pointer]


async def test_http_feedback_answers_a_schema_without_internal_columns(client, settings):
    book = playbook()
    engine = make_engine(settings.database_url, pool_size=2)
    desk = Desk(make_sessionmaker(engine), HandoffService(book, "t.h", "t.f"))
    hid = await desk.qualify("http@acme.example", MONDAY_NOON)
    rep = (await desk.get(hid)).rep_id
    listed = (await client.get("/v1/handoffs", params={"status": "assigned"})).json()
    assert [h["handoff_id"] for h in listed] == [hid]
    assert "lifecycle_event_id" not in listed[0] and "skipped" not in listed[0]
    wrong = await client.post(f"/v1/handoffs/{hid}/accept", json={"rep_id": "mgr-nobody"})
    assert (wrong.status_code, wrong.json()["errors"][0]["pointer"]) == (422, "/rep_id")
    ok = await client.post(f"/v1/handoffs/{hid}/accept", json={"rep_id": rep})
    assert ok.json()["status"] == "accepted"
    again = await client.post(f"/v1/handoffs/{hid}/accept", json={"rep_id": rep})
    assert (again.status_code, again.headers["content-type"]) == (409, "application/problem+json")
    missing = await client.post("/v1/handoffs/nope/accept", json={"rep_id": rep})
    assert missing.status_code == 404
    bad_stage = await client.post(f"/v1/handoffs/{hid}/convert", json={"converted_to": "lead"})
    assert (bad_stage.status_code, bad_stage.json()["errors"][0]["pointer"]) == (
        422,
        "/converted_to",
    )
    reps = (await client.get("/v1/reps")).json()
    assert {r["rep_id"] for r in reps} >= {"rep-ana", "rep-dora"} and "updated_at" not in reps[0]
    funnel = (await client.get("/v1/funnel")).json()
    assert "counts" in funnel["sla"] and funnel["rejected_by_reason"] == {}
    await engine.dispose()


# -- issue 25: what a conversion is worth ---------------------------------------------------


async def test_conversion_amounts_are_stored_and_summed_as_pipeline_and_revenue(sessions):
    desk = await desk_for(sessions, playbook())  # reporting_currency: EUR
    deals = {"a@acme.example": "EUR", "b@acme.example": None, "c@acme.example": "USD"}
    hids = {email: await desk.qualify(email, MONDAY_NOON) for email in deals}
    for email, currency in deals.items():
        hid = hids[email]
        rep = (await desk.get(hid)).rep_id
        await desk.feedback("accept", hid, MONDAY_NOON, rep_id=rep)
        with pytest.raises(LeadrouterError) as refused:  # sql carries no amount
            await desk.feedback(
                "convert", hid, MONDAY_NOON, rep_id=rep, converted_to="sql", amount=Decimal(5)
            )
        assert (refused.value.status, refused.value.errors[0]["pointer"]) == (422, "/amount")
        await desk.feedback(
            "convert",
            hid,
            MONDAY_NOON,
            rep_id=rep,
            converted_to="opportunity",
            amount=Decimal("1000.50"),
            currency=currency,
        )
    rep = (await desk.get(hids["a@acme.example"])).rep_id
    won = await desk.feedback(
        "convert",
        hids["a@acme.example"],
        MONDAY_NOON,
        rep_id=rep,
        converted_to="customer",
        amount=Decimal("900"),
    )
    assert (won.opportunity_amount, won.opportunity_currency) == (Decimal("1000.50"), "EUR")
    assert (won.customer_amount, won.customer_currency) == (Decimal("900.00"), "EUR")
    assert (await desk.get(hids["b@acme.example"])).opportunity_currency == "EUR"  # the default
    funnel = await desk.funnel(MONDAY_NOON)
    assert funnel["pipeline"] == {"EUR": Decimal("2001.00"), "USD": Decimal("1000.50")}
    assert funnel["revenue"] == {"EUR": Decimal("900.00")}
    outside = await desk.funnel(MONDAY_NOON + timedelta(days=3))
    assert (outside["pipeline"], outside["revenue"]) == ({}, {})


async def test_an_amount_needs_a_currency_when_the_playbook_sets_none(sessions):
    book = playbook(replace={"reporting_currency: EUR": "reporting_currency: null"})
    assert book.closed_loop.reporting_currency is None
    desk = await desk_for(sessions, book)
    hid = await desk.qualify("nocur@acme.example", MONDAY_NOON)
    rep = (await desk.get(hid)).rep_id
    await desk.feedback("accept", hid, MONDAY_NOON, rep_id=rep)
    with pytest.raises(LeadrouterError) as refused:
        await desk.feedback(
            "convert", hid, MONDAY_NOON, rep_id=rep, converted_to="customer", amount=Decimal(10)
        )
    assert (refused.value.status, refused.value.errors[0]["pointer"]) == (422, "/currency")
    assert (await desk.get(hid)).status == "accepted"  # nothing changed


async def test_http_convert_takes_an_amount_and_the_funnel_sums_it(client, settings):
    engine = make_engine(settings.database_url, pool_size=2)
    desk = Desk(make_sessionmaker(engine), HandoffService(playbook(), "t.h", "t.f"))
    hid = await desk.qualify("money@acme.example", datetime.now(UTC))
    rep = (await desk.get(hid)).rep_id
    await client.post(f"/v1/handoffs/{hid}/accept", json={"rep_id": rep})
    convert = f"/v1/handoffs/{hid}/convert"
    for body, pointer in (
        ({"amount": 0}, "/amount"),
        ({"amount": "12.345"}, "/amount"),
        ({"amount": 10, "currency": "eur"}, "/currency"),
    ):
        refused = await client.post(
            convert, json={"rep_id": rep, "converted_to": "opportunity", **body}
        )
        assert refused.status_code == 422
        assert [e["pointer"] for e in refused.json()["errors"]] == [pointer]
    opened = await client.post(
        convert,
        json={"rep_id": rep, "converted_to": "opportunity", "amount": 12000, "currency": "GBP"},
    )
    assert opened.status_code == 200, opened.text
    assert (opened.json()["opportunity_amount"], opened.json()["opportunity_currency"]) == (
        "12000.00",
        "GBP",
    )
    funnel = (await client.get("/v1/funnel")).json()
    assert (funnel["pipeline"], funnel["revenue"]) == ({"GBP": "12000.00"}, {})
    await engine.dispose()


# -- issue 25: sales insights ----------------------------------------------------------------


async def test_insights_are_kept_published_and_their_notes_erased_with_the_lead(sessions):
    from services.handoff import erasure

    desk = await desk_for(sessions, playbook())
    hid = await desk.qualify("insight@acme.example", MONDAY_NOON)
    rep = (await desk.get(hid)).rep_id
    with pytest.raises(LeadrouterError) as refused:
        await desk.feedback("accept", hid, MONDAY_NOON, rep_id=rep, tags={"objection": ["nope"]})
    assert refused.value.errors == [{"pointer": "/tags/objection/0", "detail": str(refused.value)}]
    await desk.feedback(
        "accept",
        hid,
        MONDAY_NOON,
        rep_id=rep,
        tags={"objection": ["price"], "persona": ["founder"]},
        note="Call back after the board meeting",
    )
    await desk.feedback("contact", hid, MONDAY_NOON, rep_id=rep)  # no insight: none kept
    async with sessions() as s:
        rows = (await s.execute(select(repository.sales_insights))).all()
    assert [(r.action, r.tags, r.note, r.routing_rule) for r in rows] == [
        (
            "accept",
            {"objection": ["price"], "persona": ["founder"]},
            rows[0].note,
            rows[0].routing_rule,
        )
    ]
    assert rows[0].note == "Call back after the board meeting" and rows[0].routing_rule
    async with sessions() as s:
        kinds = [
            json.loads(v)["type"]
            for v in (
                await s.execute(
                    select(outbox.c.value).where(outbox.c.topic == desk.service.insights_topic)
                )
            ).scalars()
        ]
    assert kinds == ["leadrouter.insight.recorded"]
    async with sessions() as s, s.begin():
        await erasure.erase_lead(s, "email:insight@acme.example", MONDAY_NOON, "handoff", [])
    async with sessions() as s:
        after = (await s.execute(select(repository.sales_insights))).one()
    assert (after.note, after.tags) == (None, {"objection": ["price"], "persona": ["founder"]})
