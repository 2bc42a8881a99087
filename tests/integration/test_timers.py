"""Durable timers on the real PostgreSQL: fire once, on time, shared between runners."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shared.db import make_engine, make_sessionmaker
from shared.timers import Timer, TimerRunner, cancel, pending, schedule
from tests.helpers import eventually

pytestmark = pytest.mark.integration


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

    runners = [TimerRunner(sessions, {"test.due": handler}, batch_max=25) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await eventually(lambda: _true(len(fired) >= 300), 30, "300 timers fired")
        await asyncio.sleep(0.3)  # a double firing would show up now
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(fired) == sorted(f"k{i}" for i in range(300))
    async with sessions() as s:
        left = {t.key for t in await pending(s, ["test.due", "test.other"])}
    assert left == {"future", "not-mine"}


async def test_a_failing_handler_leaves_the_timer_for_a_retry(sessions):
    now = await db_now(sessions)
    async with sessions() as s, s.begin():
        await schedule(s, "test.flaky", "k", now)
    calls = 0

    async def flaky(session, timer, fired_at):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first try fails")

    runner = TimerRunner(sessions, {"test.flaky": flaky})
    with pytest.raises(RuntimeError):
        await runner.fire_due()
    assert await runner.fire_due() == 1
    assert await runner.fire_due() == 0
    assert calls == 2


async def test_a_nearer_timer_wakes_a_sleeping_runner(sessions):
    fired = asyncio.Event()

    async def handler(session, timer, fired_at):
        fired.set()

    runner = TimerRunner(sessions, {"test.wake": handler}, max_sleep_s=3600)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(0.3)  # the runner now sleeps: nothing is due
        async with sessions() as s, s.begin():
            await schedule(s, "test.wake", "soon", await db_now(sessions) + timedelta(seconds=0.2))
        runner.wake()
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
