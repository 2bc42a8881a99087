"""Durable timers on the real PostgreSQL: fire once, on time, shared between runners."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from shared import metrics
from shared.db import make_engine, make_sessionmaker, timers
from shared.errors import Invalid
from shared.timers import (
    Timer,
    TimerRunner,
    cancel,
    parked_timers,
    pending,
    retry_delay_s,
    schedule,
    unpark,
)
from tests.helpers import eventually

pytestmark = pytest.mark.integration


class ObservedRunner(TimerRunner):
    """A runner that says when it has finished a pass and is about to sleep."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sleeping = asyncio.Event()
        self.woken_by_commits: list[bool] = []  # per commit that set timers: did it wake us

    def wake_for(self, due_at: Any) -> None:
        super().wake_for(due_at)
        self.woken_by_commits.append(self._wake.is_set())

    async def _seconds_until_next(self) -> float:
        sleep_s = await super()._seconds_until_next()
        self.sleeping.set()  # no await between this and the sleep: the runner sleeps next
        return sleep_s

    async def next_pass(self) -> None:
        """Wake the runner and wait until it has read the due timers again and sleeps."""
        self.sleeping.clear()
        self.wake()
        await asyncio.wait_for(self.sleeping.wait(), 10)


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=6)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def db_now(sessions):
    async with sessions() as s:
        return await s.scalar(select(func.now()))


async def test_two_runners_fire_every_due_timer_exactly_once(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        for i in range(300):
            await schedule(s, "test.due", f"k{i}", now - timedelta(seconds=1), {"i": i})
        await schedule(s, "test.due", "future", now + timedelta(hours=1))
        await schedule(s, "test.other", "not-mine", now - timedelta(seconds=1))
    fired: list[str] = []

    async def handler(session, timer: Timer, fired_at):
        assert timer.due_at <= fired_at
        fired.append(timer.key)
        await asyncio.sleep(0)  # let the other runner interleave

    runners = [ObservedRunner(sessions, {"test.due": handler}, batch_max=25) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await eventually(lambda: _true(len(fired) >= 300), 30, "300 timers fired")
        for runner in runners:  # a pass under way ends, and one more finds nothing to fire twice
            await runner.next_pass()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(fired) == sorted(f"k{i}" for i in range(300))
    async with sessions() as s:
        left = {t.key for t in await pending(s, ["test.due", "test.other"])}
    assert left == {"future", "not-mine"}


async def test_a_failing_timer_is_retried_with_backoff_while_the_others_fire(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        for i in range(5):
            await schedule(s, "test.mixed", f"ok{i}", now - timedelta(seconds=5 - i))
        await schedule(s, "test.mixed", "bad", now - timedelta(seconds=3))
    fired: list[str] = []
    calls = 0

    async def handler(session, timer, fired_at):
        nonlocal calls
        if timer.key == "bad":
            calls += 1
            # A write the savepoint must undo, then the failure (a renamed team, say).
            await schedule(session, "test.mixed", "side-effect", fired_at)
            raise KeyError("team 'emea' is not in the playbook")
        fired.append(timer.key)

    runner = TimerRunner(sessions, {"test.mixed": handler}, max_attempts=3, retry_base_s=60)
    assert await runner.fire_due() == 5
    # The batch was tried whole, rolled back at the failure, then each timer alone.
    assert sorted(set(fired)) == [f"ok{i}" for i in range(5)]
    assert calls == 2
    async with sessions() as s:
        row = (await s.execute(select(timers).where(timers.c.key == "bad"))).one()
        side_effect = await s.scalar(select(func.count()).where(timers.c.key == "side-effect"))
    assert row.attempts == 1
    assert row.last_error.startswith("KeyError")
    assert row.parked_at is None
    assert row.due_at >= now + timedelta(seconds=59)  # backoff, not every second
    assert side_effect == 0
    assert await runner.fire_due() == 0  # not due again yet
    assert calls == 2


async def test_a_timer_that_keeps_failing_is_parked_and_listed(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "test.broken", "h1", now)
        await schedule(s, "test.broken", "h2", now)
    calls = 0

    async def broken(session, timer, fired_at):
        nonlocal calls
        calls += 1
        if timer.key == "h1":
            raise RuntimeError("always fails")

    runner = TimerRunner(sessions, {"test.broken": broken}, max_attempts=3, retry_base_s=0.01)
    for _ in range(10):
        await runner.fire_due()
        await asyncio.sleep(0.05)
    # h2 once; h1 once in the first batch (rolled back, not an attempt), then three
    # attempts alone, then never again
    assert calls == 5
    async with sessions() as s:
        (parked,) = await parked_timers(s, "test.")
    assert (parked.kind, parked.key, parked.attempts) == ("test.broken", "h1", 3)
    assert parked.last_error == "RuntimeError: always fails"
    assert metrics.TIMERS_PARKED.labels("test.broken")._value.get() == 1
    async with sessions() as s, s.begin():
        assert await unpark(s, "test.broken", "h1", now)
    await runner.fire_due()
    assert calls == 6  # fixed and released: it fires again


async def test_a_kind_without_handler_is_parked_not_left_unnoticed(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "svc.renamed", "k", now)
        await schedule(s, "svc.known", "k", now)
        await schedule(s, "other.kind", "k", now)
    fired: list[str] = []

    async def known(session, timer, fired_at):
        fired.append(timer.kind)

    runner = TimerRunner(
        sessions, {"svc.known": known}, kind_prefix="svc.", max_attempts=1, retry_base_s=0.01
    )
    assert await runner.fire_due() == 1
    assert fired == ["svc.known"]
    async with sessions() as s:
        parked = await parked_timers(s)
        left = {t.kind for t in await pending(s, ["other.kind"])}
    assert [(p.kind, p.last_error) for p in parked] == [
        ("svc.renamed", "LookupError: no handler for timer kind 'svc.renamed'")
    ]
    assert left == {"other.kind"}  # another service's timer is not this runner's business


async def test_an_error_retrying_cannot_fix_parks_at_once(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "test.refused", "k", now)

    async def refuses(session, timer, fired_at):
        raise Invalid("the handoff is closed")

    runner = TimerRunner(sessions, {"test.refused": refuses}, max_attempts=5)
    await runner.fire_due()
    async with sessions() as s:
        (parked,) = await parked_timers(s)
    assert parked.attempts == 1


async def test_a_nearer_timer_wakes_a_sleeping_runner(sessions):
    fired = asyncio.Event()

    async def handler(session, timer, fired_at):
        fired.set()

    runner = ObservedRunner(sessions, {"test.wake": handler}, max_sleep_s=3600)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.sleeping.wait(), 10)  # nothing is due: it sleeps an hour
        async with sessions() as s, s.begin():
            await schedule(s, "test.wake", "soon", await db_now(sessions) + timedelta(seconds=0.2))
        runner.wake()
        await asyncio.wait_for(fired.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_commit_wakes_only_runners_that_sleep_past_its_timers(sessions):
    fired = asyncio.Event()

    async def handler(session, timer, fired_at):
        fired.set()

    runner = ObservedRunner(sessions, {"test.lazy": handler}, max_sleep_s=3600)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.sleeping.wait(), 10)  # nothing is due: it sleeps an hour
        now = await db_now(sessions)
        async with sessions() as s, s.begin():  # a decay timer days ahead: no need to look
            await schedule(s, "test.lazy", "later", now + timedelta(days=2))
        assert runner.woken_by_commits == [False]
        async with sessions() as s, s.begin():  # due before the runner would look: it wakes
            await schedule(s, "test.lazy", "soon", now + timedelta(seconds=0.2))
        assert runner.woken_by_commits == [False, True]
        await asyncio.wait_for(fired.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_rescheduling_replaces_and_cancel_removes(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "test.sla", "h1", now + timedelta(minutes=5))
        await schedule(s, "test.sla", "h1", now + timedelta(minutes=15), {"v": 2})
        await schedule(s, "test.sla", "h2", now + timedelta(minutes=1))
        await cancel(s, "test.sla", "h2")
    async with sessions() as s:
        (only,) = await pending(s, ["test.sla"])
    assert (only.key, only.payload, only.due_at) == ("h1", {"v": 2}, now + timedelta(minutes=15))


async def _true(value: bool) -> bool:
    return value


def test_retry_delay_doubles_and_is_capped():
    assert [retry_delay_s(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert retry_delay_s(30, 2.0) == 300.0


async def test_parked_timers_are_counted_after_a_restart_with_nothing_due(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "test.restart", "k", now)
        await s.execute(
            update(timers)
            .where(timers.c.kind == "test.restart")
            .values(parked_at=now, attempts=5, last_error="KeyError: 'emea'")
        )

    async def handler(session, timer, fired_at):
        raise AssertionError("a parked timer must not fire")

    runner = TimerRunner(sessions, {"test.restart": handler}, max_sleep_s=3600)
    metrics.TIMERS_PARKED.labels("test.restart").set(0)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(
            lambda: _true(metrics.TIMERS_PARKED.labels("test.restart")._value.get() == 1),
            10,
            "the parked timer counted",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("failing", [False, True], ids=["together", "one by one"])
async def test_a_timer_an_earlier_handler_of_the_batch_set_again_keeps_its_new_setting(
    sessions, failing
):
    # Both due in one batch: the first handler sets the second timer again (as a handoff's
    # breach sets the next rep's clock). The second, as claimed, is no longer due: it must not
    # fire, and its new setting must stay. The same when the batch falls back to one savepoint
    # per timer because another timer fails.
    now = await db_now(sessions)
    later = now + timedelta(hours=1)
    async with sessions() as s, s.begin():
        await schedule(s, "test.first", "k", now - timedelta(seconds=3))
        await schedule(s, "test.second", "k", now - timedelta(seconds=2))
        if failing:
            await schedule(s, "test.broken", "k", now - timedelta(seconds=1))
    fired: list[str] = []

    async def first(session, timer, fired_at):
        fired.append(timer.kind)
        await schedule(session, "test.second", "k", later, {"set": "again"})

    async def second(session, timer, fired_at):
        fired.append(timer.kind)

    async def broken(session, timer, fired_at):
        raise RuntimeError("boom")

    runner = TimerRunner(
        sessions, {"test.first": first, "test.second": second, "test.broken": broken}
    )
    assert await runner.fire_due() == 1
    assert fired == ["test.first"] * (2 if failing else 1)  # together, then alone
    async with sessions() as s:
        left = [(t.kind, t.due_at, t.payload) for t in await pending(s, ["test.second"])]
    assert left == [("test.second", later, {"set": "again"})]
