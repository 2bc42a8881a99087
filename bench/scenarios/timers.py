"""Durable timers at scale: one million pending, 5,000 a second coming due, fired by the
shared TimerRunner (the one handoff's SLA clocks and scoring's decay use) with a handler that
does nothing; lateness is the handler's wall clock minus the timer's due time."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.env import fresh_settings, plain_dsn, progress
from bench.result import Figure, Result
from shared.db import make_engine, make_sessionmaker
from shared.timers import Timer, TimerRunner

KIND = "bench.sla"


async def run(quick: bool) -> Result:
    pending = 200_000 if quick else 1_000_000
    rate = 5_000
    window_s = 10 if quick else 30
    result = Result("timers")
    settings = await fresh_settings()
    conn = await asyncpg.connect(plain_dsn(settings))
    start = datetime.now(UTC) + timedelta(seconds=20)
    due_count = rate * window_s
    progress(
        f"  writing {pending:,} timers ({due_count:,} due in {window_s}s from {start:%H:%M:%S})"
    )
    far = start + timedelta(days=1)
    rows = [
        (
            KIND,
            f"k{i}",
            start + timedelta(seconds=i / rate) if i < due_count else far + timedelta(seconds=i),
        )
        for i in range(pending)
    ]
    await conn.copy_records_to_table("timers", records=rows, columns=["kind", "key", "due_at"])
    await conn.execute("analyze timers")
    await conn.close()
    lateness_s: list[float] = []

    async def fire(session: object, timer: Timer, now: datetime) -> None:
        lateness_s.append(time.time() - timer.due_at.timestamp())

    engine = make_engine(settings.database_url, pool_size=2)
    runner = TimerRunner(make_sessionmaker(engine), {KIND: fire})  # type: ignore[dict-item]
    task = asyncio.create_task(runner.run())
    try:
        wait_s = (start - datetime.now(UTC)).total_seconds()
        progress(f"  {wait_s:.0f}s until the first timer is due")
        deadline = time.perf_counter() + wait_s + window_s + 60
        while len(lateness_s) < due_count and time.perf_counter() < deadline:
            await asyncio.sleep(1)
            progress(f"  fired {len(lateness_s):,}/{due_count:,}")
    finally:
        task.cancel()
        await engine.dispose()
    late = sorted(lateness_s)
    p99 = late[int(len(late) * 0.99)] if late else float("nan")
    result.figures += [
        Figure(
            f"timer lateness p99 s, {pending:,} pending, {rate:,}/s due",
            p99,
            "s",
            target=("max", 1.0),
        ),
        Figure(
            "timers fired of those due",
            float(len(late)),
            "",
            baseline=float(due_count),
            baseline_name="due",
            target=("min_ratio", 1.0),
        ),
    ]
    result.series["lateness (s)"] = late
    return result
