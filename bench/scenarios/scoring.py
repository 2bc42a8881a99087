"""Scoring throughput per instance, against raw asyncpg batched upserts of the same rows; then
`leadrouter scoring replay` over a topic of its own (at least 100,000 records, so the command's
start-up is not most of what it measures), against the same command through the live consumer
(the --publish path) on the same topic.

The topic is filled first (a realistic mix: a third of the events from new leads, the rest
from returning ones), then one scoring process consumes it with batches of up to 500.
The baseline writes, with plain asyncpg in batches of 500 per transaction, the rows scoring
wrote for the same events: each event's lead row (upsert) and its processed id.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psutil

from bench.env import LOG_DIR, ProcessSample, fresh_settings, plain_dsn, progress
from bench.result import Figure, Result
from harness.processes import Service, profiled, python_pid
from shared.events import LEAD_ACTIVITY, CloudEvent
from shared.kafka import LEAD_EVENTS, ensure_topics, make_producer
from shared.settings import Settings

KINDS = ("page_view", "email_open", "pricing_page_view", "email_click", "webinar_attended")


def lead_events(count: int, seed: str) -> list[CloudEvent]:
    """`count` activities: every third from a new lead, the others from earlier leads."""
    events, leads = [], 0
    now = datetime.now(UTC)
    for i in range(count):
        if i % 3 == 0 or leads == 0:
            leads += 1
            lead = leads
        else:
            lead = 1 + (i * 7919) % leads
        email = f"lead{lead}-{seed}@bench.example"
        # The last hour, as live traffic: decay timers are not due during the run.
        occurred = (now - timedelta(seconds=3600 * (count - i) // count)).isoformat()
        events.append(
            CloudEvent(
                id=str(uuid.uuid4()),
                source="bench",
                type=LEAD_ACTIVITY,
                time=occurred,  # type: ignore[arg-type]
                subject=f"email:{email}",
                data={
                    "identity": {"email": email, "external_ids": {}},
                    "attributes": {"company": f"Company {lead % 500}", "company_size": lead % 900},
                    "activity": {
                        "type": KINDS[i % len(KINDS)],
                        "occurred_at": occurred,
                        "properties": {"path": "/pricing" if i % 4 == 0 else "/blog"},
                    },
                },
            )
        )
    return events


async def fill_topic(settings: Settings, events: list[CloudEvent]) -> None:
    """Publish the events to the lead-events topic, keyed by lead."""
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        topic = settings.topic(LEAD_EVENTS)
        pending = []
        for event in events:
            pending.append(await producer.send(topic, event.to_bytes(), key=event.subject.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _offsets_done(conn: asyncpg.Connection, topic: str) -> int:
    return int(
        await conn.fetchval(
            "select coalesce(sum(next_offset), 0) from consumer_offsets where topic = $1", topic
        )
    )


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _backends_cpu_s(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (named in its title)."""
    cpu = {}
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or ())
        if title.startswith("postgres: ") and f" {database} " in title:
            try:
                cpu[process.pid] = _cpu_s(process)
            except psutil.Error:
                pass
    return cpu


async def measure_service(settings: Settings, count: int) -> tuple[float, dict]:
    """Events/s one scoring process takes from the filled topic, with its CPU and peak RSS, and
    the CPU per event of the process and of the database's backends while it consumed (from
    its first stored offset: start-up and imports are not per event)."""
    service = Service("scoring", settings, LOG_DIR)
    service.env["LEADROUTER_CONSUMER_BATCH_MAX"] = "500"
    topic = settings.topic(LEAD_EVENTS)
    database = plain_dsn(settings).rsplit("/", 1)[1]
    conn = await asyncpg.connect(plain_dsn(settings))
    try:
        sample = ProcessSample("scoring", service.spawn())
        ready = asyncio.create_task(service.wait_ready())
        sample.begin()
        started, first = time.perf_counter(), None
        last_report = started
        process = psutil.Process(sample.pid)
        while True:
            done = await _offsets_done(conn, topic)
            sample.sample()
            if done and first is None:
                first = (time.perf_counter(), done)
                window = (_cpu_s(process), _backends_cpu_s(database))
            if done >= count:
                consumed = (_cpu_s(process), _backends_cpu_s(database))
                break
            if time.perf_counter() - last_report > 2:
                progress(f"  scoring {done}/{count}")
                last_report = time.perf_counter()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - (first[0] if first else started)
        events = count - (first[1] if first else 0)
        rate = events / max(elapsed, 1e-9)
        backends = consumed[1]
        db_cpu_s = sum(cpu - window[1].get(pid, 0.0) for pid, cpu in backends.items())
        await ready
        sample.sample()
        return rate, {
            "process": "scoring",
            "cpu_s": sample.cpu_s,
            "peak_rss_mb": sample.peak_rss_mb,
            "cpu_us_per_event": (consumed[0] - window[0]) / max(events, 1) * 1e6,
            "db_cpu_us_per_event": db_cpu_s / max(events, 1) * 1e6,
        }
    finally:
        await conn.close()
        service.stop()


async def measure_raw_upserts(settings: Settings, events: list[CloudEvent]) -> float:
    """Events/s of plain asyncpg writing, per event, its lead's row and its processed id."""
    conn = await asyncpg.connect(plain_dsn(settings))
    try:
        # JSONB stays text both ways (asyncpg's default): the rows go back exactly as read.
        rows = {r["lead_key"]: r for r in await conn.fetch("select * from leads")}
        await conn.execute(
            "create table raw_leads (like leads including all);"
            "create table raw_processed (consumer_group text, event_id text, "
            "primary key (consumer_group, event_id))"
        )
        columns = list(next(iter(rows.values())).keys())
        arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(await _types(conn, columns)))
        upsert = (
            f"insert into raw_leads ({', '.join(columns)}) select * from unnest({arrays}) "
            f"on conflict (lead_key) do update set "
            + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "lead_key")
        )
        started = time.perf_counter()
        for start in range(0, len(events), 500):
            batch = events[start : start + 500]
            touched = {e.subject: rows[e.subject] for e in batch if e.subject in rows}
            async with conn.transaction():
                await conn.execute(upsert, *[[r[c] for r in touched.values()] for c in columns])
                await conn.execute(
                    "insert into raw_processed select 'bench', unnest($1::text[])",
                    [e.id for e in batch],
                )
        return len(events) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _types(conn: asyncpg.Connection, columns: list[str]) -> list[str]:
    types = dict(
        await conn.fetch(
            "select column_name, udt_name from information_schema.columns "
            "where table_name = 'leads'"
        )
    )
    return [types[c].lstrip("_") for c in columns]


def measure_replay(settings: Settings, *options: str) -> tuple[float, dict]:
    """Records/s of `leadrouter scoring replay` over the filled topic, as a process, with its
    CPU seconds (its rusage), records per CPU second and peak RSS."""
    env = {
        **os.environ,
        "LEADROUTER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LEADROUTER_DATABASE_URL": settings.database_url,
        "LEADROUTER_TOPIC_NAMESPACE": settings.topic_namespace,
    }
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        argv = [sys.executable, "-m", "services.cli", "scoring", "replay", *options]
        child = subprocess.Popen(
            profiled(argv, "scoring-replay" + "".join(o.replace("-", "_") for o in options)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        # RSS sampled (the child's own ru_maxrss starts at the forked benchmark's size).
        sample = ProcessSample("scoring replay", python_pid(child))
        sample.begin()
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sample.sample()
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if child.returncode:
        raise RuntimeError(f"replay {options} failed ({child.returncode}): {stderr[-2000:]}")
    last = [line for line in stderr.splitlines() if "[replay] done" in line][-1]
    total = int(last.split("done: ")[1].split(" records")[0])
    # Under --profile the child is py-spy and the replay its child, whose rusage wait4 does not
    # return: then the replay's CPU as last sampled (up to 50 ms before it ended).
    profiling = sample.pid != child.pid
    cpu_s = sample.cpu_s if profiling else usage.ru_utime + usage.ru_stime
    return total / elapsed, {
        "process": "scoring replay" + "".join(f" {o}" for o in options),
        "cpu_s": cpu_s,
        "records_per_cpu_s": total / max(cpu_s, 1e-9),
        "peak_rss_mb": sample.peak_rss_mb,
    }


async def run(quick: bool) -> Result:
    count = 6_000 if quick else 30_000
    result = Result("scoring")
    settings = await fresh_settings()
    progress(f"  filling the topic with {count} events")
    events = lead_events(count, uuid.uuid4().hex[:6])
    await fill_topic(settings, events)
    progress("  scoring service")
    rate, process = await measure_service(settings, count)
    result.processes.append(process)
    progress("  raw asyncpg upserts of the same rows")
    raw = await measure_raw_upserts(settings, events)
    result.figures.append(
        Figure(
            "scoring events/s, one instance, batches of 500",
            rate,
            "events/s",
            baseline=raw,
            baseline_name="raw asyncpg batched upserts (unnest), same rows",
            target=("min_ratio", 0.5),
        )
    )
    result.figures.append(
        Figure("scoring events/s (absolute)", rate, "events/s", target=("min", 20_000))
    )
    # Per event while consuming: the figures the machine's other load moves least.
    result.figures.append(
        Figure("scoring CPU per event (scoring process)", process["cpu_us_per_event"], "µs")
    )
    result.figures.append(
        Figure(
            "PostgreSQL CPU per event (the backends serving scoring)",
            process["db_cpu_us_per_event"],
            "µs",
        )
    )
    replay_count = 100_000 if quick else 300_000
    replay_settings = await fresh_settings()
    progress(f"  replay: filling a topic with {replay_count} events")
    await fill_topic(replay_settings, lead_events(replay_count, uuid.uuid4().hex[:6]))
    # The baseline: the same command through the live consumer and handler, batch by batch
    # (the path --publish takes), over the same topic; then the in-memory fold.
    progress("  replay --publish (through the live consumer)")
    through_consumer, through_consumer_process = measure_replay(replay_settings, "--publish")
    result.processes.append(through_consumer_process)
    progress("  replay")
    replay, replay_process = measure_replay(replay_settings)
    result.processes.append(replay_process)
    result.figures.append(
        Figure(
            "replay records/s (whole command)",
            replay,
            "records/s",
            baseline=through_consumer,
            baseline_name="the same command through the live consumer (--publish path)",
            target=("min", 50_000),
        )
    )
    result.figures.append(
        Figure(
            "replay records per CPU second (replay process)",
            replay_process["records_per_cpu_s"],
            "records/s",
        )
    )
    return result
