"""SLA timers, sales feedback and routing take their locks in one order, so they never
deadlock; routing locks only its team's reps, so leads of different teams do not wait for
each other.

Each test forces the interleaving that deadlocked under load: one transaction gets a row first
and pauses there until the other is waiting on a lock (or is done), then goes on. PostgreSQL's
own count (pg_stat_database.deadlocks for the test's database) says whether it deadlocked.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from services.handoff import repository
from services.handoff.service import ACCEPT_BREACH, WARNING, HandoffService
from services.handoff.status import HandoffStatus
from shared import timers
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker, outbox
from shared.events import CloudEvent, FeedbackData, LifecycleData
from shared.timers import TimerRunner
from tests.integration.test_handoff_service import (
    MONDAY_NOON,
    SALES_REPS,
    Desk,
    desk_for,
    playbook,
)

pytestmark = pytest.mark.integration

FEEDBACK = "tests.feedback"  # session.info flag: this session is the feedback's transaction
FIRST = "tests.first"  # session.info flag: this consumer batch pauses once it holds its reps


@pytest.fixture
async def engine(settings) -> AsyncIterator[Any]:
    engine = make_engine(settings.database_url, pool_size=6)
    yield engine
    await engine.dispose()


async def deadlocks(engine: Any) -> int:
    """Deadlocks PostgreSQL detected in this database, once every other backend has exited
    (a backend reports its counts when it goes idle or exits)."""
    await engine.dispose()
    async with engine.connect() as conn:
        for _ in range(200):
            others = await conn.scalar(
                text(
                    "select count(*) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                )
            )
            if not others:
                break
            await asyncio.sleep(0.02)
        await conn.execute(text("select pg_stat_clear_snapshot()"))
        return int(
            await conn.scalar(
                text("select deadlocks from pg_stat_database where datname = current_database()")
            )
        )


async def until_blocked_or_done(sessions: Any, task: "asyncio.Task[Any]") -> None:
    """Return once `task` is done or some transaction in this database waits on a lock."""
    async with asyncio.timeout(20):
        while not task.done():
            async with sessions() as s:
                waiting = await s.scalar(
                    text(
                        "select count(*) from pg_stat_activity where datname = current_database()"
                        " and wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            await asyncio.sleep(0.02)


def runner(desk: Desk, handlers: dict[str, timers.TimerHandler]) -> TimerRunner:
    """A runner over some of the service's timer kinds, built as the app builds it."""
    return TimerRunner(desk.sessions, handlers, lock_first=desk.service.lock_for_timers)


def pausing_lock_handoff(
    monkeypatch: pytest.MonkeyPatch, locked: asyncio.Event, go_on: Callable[[], Any]
) -> None:
    """The feedback's transaction, once it holds its handoff row, waits for `go_on()`."""
    real = repository.lock_handoff

    async def lock_handoff(session: Any, handoff_id: str) -> Any:
        handoff = await real(session, handoff_id)
        if session.info.get(FEEDBACK) and not locked.is_set():
            locked.set()
            await go_on()
        return handoff

    monkeypatch.setattr(repository, "lock_handoff", lock_handoff)


async def feedback(desk: Desk, action: str, handoff_id: str, **body: Any) -> None:
    async with desk.sessions() as s, s.begin():
        s.info[FEEDBACK] = True
        await desk.service.apply_feedback(
            s, action, FeedbackData(handoff_id=handoff_id, **body), MONDAY_NOON, cause="test"
        )


async def keep_only(desk: Desk, *wanted: tuple[str, str]) -> None:
    """Leave only these (kind, key) timers, all long overdue."""
    async with desk.sessions() as s, s.begin():
        for row in (await s.execute(select(timers.timers))).all():
            if (row.kind, row.key) not in wanted:
                await timers.cancel(s, row.kind, row.key)


async def event_kinds(desk: Desk, handoff_id: str) -> list[str]:
    async with desk.sessions() as s:
        values = (await s.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
        events = [json.loads(v) for v in values]
    return [
        e["type"].removeprefix("leadrouter.handoff.")
        for e in events
        if e["data"]["handoff_id"] == handoff_id
    ]


async def test_a_warning_and_an_accept_on_the_same_handoff_do_not_deadlock(engine, monkeypatch):
    # The rep accepts while the warning fires: the feedback holds the handoff and cancels the
    # warning's timer; the runner must not hold that timer row while it waits for the handoff.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    hid = await desk.qualify("accepting@acme.example", MONDAY_NOON)
    rep_id = (await desk.get(hid)).rep_id
    await keep_only(desk, (WARNING, hid))
    before = await deadlocks(engine)
    warnings = runner(desk, {WARNING: desk.service.on_warning})
    locked = asyncio.Event()
    fired: list[asyncio.Task[int]] = []

    async def fire_while_feedback_holds_the_handoff() -> None:
        fired.append(asyncio.create_task(warnings.fire_due()))
        await until_blocked_or_done(desk.sessions, fired[0])

    pausing_lock_handoff(monkeypatch, locked, fire_while_feedback_holds_the_handoff)
    outcomes = await asyncio.gather(
        feedback(desk, "accept", hid, rep_id=rep_id), return_exceptions=True
    )
    outcomes += await asyncio.gather(*fired, return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    await warnings.fire_due()  # the warning was cancelled by the accept: nothing left to fire
    assert (await desk.get(hid)).status == HandoffStatus.ACCEPTED
    assert await event_kinds(desk, hid) == ["assigned", "accepted"]
    assert await deadlocks(engine) == before


async def test_a_warning_and_a_breach_on_two_instances_do_not_deadlock(engine):
    # Two instances: one claims the warning, the other the accept breach, of one handoff. The
    # breach reassigns the lead and sets the next rep's warning, the timer row the first holds.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    hid = await desk.qualify("racing@acme.example", MONDAY_NOON)
    await keep_only(desk, (WARNING, hid), (ACCEPT_BREACH, hid))
    before = await deadlocks(engine)
    claimed, breach_started = asyncio.Event(), asyncio.Event()
    breaching: list[asyncio.Task[int]] = []
    breaches = runner(desk, {ACCEPT_BREACH: desk.service.on_accept_breach})

    async def warn_once_the_breach_waits(session: Any, timer: timers.Timer, now: Any) -> None:
        claimed.set()
        await breach_started.wait()
        await until_blocked_or_done(desk.sessions, breaching[0])
        await desk.service.on_warning(session, timer, now)

    warnings = runner(desk, {WARNING: warn_once_the_breach_waits})

    async def breach_once_the_warning_is_claimed() -> int:
        await claimed.wait()
        breaching.append(asyncio.create_task(breaches.fire_due()))
        breach_started.set()
        return await breaching[0]

    outcomes = await asyncio.gather(
        warnings.fire_due(), breach_once_the_warning_is_claimed(), return_exceptions=True
    )
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    await breaches.fire_due()  # a breach left for later (its handoff was held) fires now
    second = await desk.get(hid)
    assert second.reassignments == 1 and second.accept_breaches == 1
    assert await event_kinds(desk, hid) == ["assigned", "sla_warning", "sla_breached", "reassigned"]
    async with desk.sessions() as s:
        left = await timers.pending(s, [WARNING])
    assert [(t.key, t.due_at) for t in left] == [(hid, second.warn_at)]  # the next rep's
    assert await deadlocks(engine) == before


async def test_a_breach_batch_and_a_rejection_of_the_same_reps_do_not_deadlock(engine, monkeypatch):
    # A batch holds a breach (it locks the reps to reassign) and another handoff's warning; a
    # rep rejects that other handoff meanwhile, which frees a slot and drains the queue (the
    # reps again). Reps before handoff rows, for both.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    breached = await desk.qualify("breached@acme.example", MONDAY_NOON)
    rejected = await desk.qualify("rejected@acme.example", MONDAY_NOON)
    rejecting_rep = (await desk.get(rejected)).rep_id
    await keep_only(desk, (ACCEPT_BREACH, breached), (WARNING, rejected))
    async with desk.sessions() as s, s.begin():  # the breach first in the batch
        await s.execute(
            update(timers.timers)
            .where(timers.timers.c.kind == WARNING)
            .values(due_at=MONDAY_NOON + timedelta(hours=1))
        )
    before = await deadlocks(engine)
    service: HandoffService = desk.service
    batch = runner(desk, {ACCEPT_BREACH: service.on_accept_breach, WARNING: service.on_warning})
    locked = asyncio.Event()
    fired: list[asyncio.Task[int]] = []

    async def fire_while_feedback_holds_the_handoff() -> None:
        fired.append(asyncio.create_task(batch.fire_due()))
        await until_blocked_or_done(desk.sessions, fired[0])

    pausing_lock_handoff(monkeypatch, locked, fire_while_feedback_holds_the_handoff)
    outcomes = await asyncio.gather(
        feedback(desk, "reject", rejected, rep_id=rejecting_rep, reason="not_a_fit"),
        return_exceptions=True,
    )
    outcomes += await asyncio.gather(*fired, return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    await batch.fire_due()
    assert (await desk.get(rejected)).status == HandoffStatus.REJECTED
    assert (await desk.get(breached)).accept_breaches == 1
    assert "sla_warning" not in await event_kinds(desk, rejected)  # rejected before it fired
    assert await deadlocks(engine) == before


async def test_an_instance_starting_while_another_routes_does_not_deadlock(engine) -> None:
    """Start-up's roster sync takes the reps in rep_id order, as routing does (lock_reps):
    written in the playbook's order (here rep-chen before rep-ana), it held rep-chen and waited
    for rep-ana while a routing transaction held rep-ana and went on to rep-chen."""
    sessions = make_sessionmaker(engine)
    reversed_reps = "\n".join(reversed(SALES_REPS.splitlines())) + "\n"
    book = playbook(sales_reps=reversed_reps)
    async with sessions() as s, s.begin():
        await repository.sync_roster(s, book)
    before = await deadlocks(engine)
    engine_routing = make_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        async with engine_routing.connect() as routing:
            transaction = await routing.begin()
            # Routing part-way through lock_reps' rep_id order: rep-ana held, rep-chen next.
            lock = "select rep_id from reps where rep_id = :rep for update"
            await routing.execute(text(lock), {"rep": "rep-ana"})

            async def start_up() -> None:
                async with sessions() as s, s.begin():
                    await repository.sync_roster(s, book)

            starting = asyncio.create_task(start_up())
            await until_blocked_or_done(sessions, starting)  # on rep-ana (both codes do)
            routed = True
            try:
                await routing.execute(text(lock), {"rep": "rep-chen"})
            except Exception:  # the deadlock victim may be either transaction
                routed = False
            if routed:
                await transaction.commit()
            else:
                await transaction.rollback()
            try:
                await starting
                started = True
            except Exception:
                started = False
    finally:
        await engine_routing.dispose()
    assert (routed, started) == (True, True)
    assert await deadlocks(engine) == before


def mql(email: str, **attributes: Any) -> Delivered:
    """A became_mql lifecycle event as the handoff consumer receives it."""
    lead = LifecycleData(
        transition="became_mql",
        lead_key=f"email:{email}",
        email=email,
        attributes=attributes,
        stage="mql",
        score=90,
        tier="hot",
        qualifying_activity_at=MONDAY_NOON,
    )
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="tests",
        type="leadrouter.lifecycle.became_mql",
        time=MONDAY_NOON,
        subject=lead.lead_key,
        data=lead.model_dump(mode="json"),
    )
    return Delivered(event, "tests.lifecycle", 0, 0)


async def consume(desk: Desk, batch: list[Delivered], first: bool = False) -> None:
    """One consumer batch in one transaction, as the handoff consumer runs it."""
    async with desk.sessions() as s, s.begin():
        s.info[FIRST] = first
        await desk.service(s, batch)


def pausing_lock_reps(
    monkeypatch: pytest.MonkeyPatch, locked: asyncio.Event, go_on: Callable[[], Any]
) -> None:
    """The first batch's transaction, once it holds its reps, waits for `go_on()`."""
    real = repository.lock_reps_and_clock

    async def lock_reps_and_clock(session: Any, *scope: Any) -> Any:
        loads = await real(session, *scope)
        if session.info.get(FIRST) and not locked.is_set():
            locked.set()
            await go_on()
        return loads

    monkeypatch.setattr(repository, "lock_reps_and_clock", lock_reps_and_clock)


async def teams_by_email(desk: Desk) -> dict[str, tuple[str | None, str | None]]:
    """Each handoff's team and its rep's team, by the lead's email."""
    async with desk.sessions() as s:
        rep_teams = {r.rep_id: r.team for r in await repository.list_reps(s)}
        rows = await repository.list_handoffs(s, None, None, None, None, 100)
    return {h.email or "": (h.team, rep_teams.get(h.rep_id or "")) for h in rows}


async def test_leads_of_two_teams_are_routed_side_by_side(engine, monkeypatch):
    # Two instances route at once: one a sales lead, the other an enterprise lead. While the
    # first holds the sales reps (its transaction still open), the second routes and commits;
    # with every rep locked by every routing, it waited for the first to commit.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    locked = asyncio.Event()
    enterprise: list[asyncio.Task[None]] = []
    done_while_sales_held: list[bool] = []

    async def route_enterprise_while_sales_is_held() -> None:
        enterprise.append(
            asyncio.create_task(consume(desk, [mql("big@acme.example", company_size=5000)]))
        )
        await until_blocked_or_done(desk.sessions, enterprise[0])
        done_while_sales_held.append(enterprise[0].done())

    pausing_lock_reps(monkeypatch, locked, route_enterprise_while_sales_is_held)
    outcomes = await asyncio.gather(
        consume(desk, [mql("small@acme.example")], first=True), return_exceptions=True
    )
    outcomes += await asyncio.gather(*enterprise, return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert done_while_sales_held == [True]
    assert await teams_by_email(desk) == {
        "small@acme.example": ("sales", "sales"),
        "big@acme.example": ("enterprise", "enterprise"),
    }


async def test_batches_routing_two_teams_in_opposite_orders_do_not_deadlock(engine, monkeypatch):
    # One batch routes a sales lead then an enterprise lead, another the reverse. Each takes
    # the reps of both teams at its first routing, in one rep_id order: locking each lead's
    # team as it came, the first held sales and waited for enterprise, the second the reverse.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    before = await deadlocks(engine)
    locked = asyncio.Event()
    second: list[asyncio.Task[None]] = []

    async def route_the_reverse_batch() -> None:
        reverse = [mql("big-2@acme.example", company_size=5000), mql("small-2@acme.example")]
        second.append(asyncio.create_task(consume(desk, reverse)))
        await until_blocked_or_done(desk.sessions, second[0])

    pausing_lock_reps(monkeypatch, locked, route_the_reverse_batch)
    first = [mql("small-1@acme.example"), mql("big-1@acme.example", company_size=5000)]
    outcomes = await asyncio.gather(consume(desk, first, first=True), return_exceptions=True)
    outcomes += await asyncio.gather(*second, return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    routed = await teams_by_email(desk)
    assert routed == {
        f"{size}-{n}@acme.example": (team, team)
        for n in (1, 2)
        for size, team in (("small", "sales"), ("big", "enterprise"))
    }
    assert await deadlocks(engine) == before


async def test_a_batch_routing_a_team_several_leads_rotates_them_as_one_at_a_time(engine):
    # The batch reads its team's reps once and keeps their ledgers itself (`HeldReps`): the
    # six leads go round the three reps as six transactions would, two each, in turn.
    desk = await desk_for(make_sessionmaker(engine), playbook())
    await consume(desk, [mql(f"lead-{i}@acme.example") for i in range(6)])
    async with desk.sessions() as s:
        rows = await repository.list_handoffs(s, None, None, None, None, 100)
        ledgers = {r.rep_id: r.assigned_total for r in await repository.list_reps(s)}
    by_rep: dict[str, int] = {}
    for handoff in rows:
        by_rep[handoff.rep_id or ""] = by_rep.get(handoff.rep_id or "", 0) + 1
    assert by_rep == {"rep-ana": 2, "rep-ben": 2, "rep-chen": 2}
    assert {k: v for k, v in ledgers.items() if k in by_rep} == by_rep
    first_round = sorted(rows, key=lambda h: h.email or "")[:3]
    assert len({h.rep_id for h in first_round}) == 3  # nobody twice in a round
