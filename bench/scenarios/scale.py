"""Scale-out: two scoring and two handoff instances on topics of 6 partitions, under a fixed
load posted through ingest by a load process, and what each instance costs.

    python -m bench --only scale --repeat 1

Measured over the load window (after the group has settled):
- CPU per event of every process (psutil), and of the PostgreSQL backends serving this run's
  database (their pids from pg_stat_activity), per event each one handled;
- each instance's share of the events (its /metrics counters) and partitions;
- serialisation across instances: pg_stat_activity sampled every 100 ms for backends of this
  database waiting on a lock (what two instances updating one row, or one advisory lock, show),
  the rebalances (partition assignments logged after the group settled), and the tables whose
  rows are updated most often per live row (hot rows).
The demo requests are spread over six countries, and the run's playbook (the example's, with
its routing replaced: `scale_playbook`) routes each country to its own team of three reps with
room for the whole window, as a sales organisation split by region does; with one team every
routing decision would wait for the one before, whatever the design.
The figures feed the capacity table in docs/operations.md."""

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import psutil
import yaml

from bench.env import LOG_DIR, ProcessSample, fresh_settings, plain_dsn, progress
from bench.result import Figure, Result
from harness.processes import Service
from shared.kafka import ensure_topics
from shared.settings import REPO_ROOT

PARTITIONS = 6
RATE_PER_S = int(os.environ.get("LEADROUTER_BENCH_SCALE_RATE", "600"))
QUALIFYING_EVERY = 20  # one event in 20 asks for a demo: handoff has work proportional too
ASSIGNED = re.compile(r"assigned \[")
# The backends holding what a waiting backend waits for, and what each is doing then ("idle in
# transaction": its process is between statements, running Python or waiting for the CPU).
HOLDERS = (
    "select distinct h.pid, h.state, left(h.query, 60) as query from pg_stat_activity w"
    " cross join lateral unnest(pg_blocking_pids(w.pid)) as b(pid)"
    " join pg_stat_activity h on h.pid = b.pid"
    " where w.datname = $1 and w.wait_event_type = 'Lock'"
)
COUNTRIES = ("DE", "FR", "GB", "US", "ES", "IT")
REPS_PER_TEAM = 3


def scale_playbook(path: Path) -> Path:
    """The example playbook with one team of reps per country of the load; written to `path`."""
    book = yaml.safe_load((REPO_ROOT / "deploy" / "playbook.example.yaml").read_text())
    book["routing"] = {
        "accounts": {},
        "existing_owner": {"days": None},
        "rules": [
            {"name": f"country-{c}", "team": f"team-{c}", "when": {"country": {"equals": c}}}
            for c in COUNTRIES
        ],
        "teams": [
            {
                "name": f"team-{c}",
                "reps": [
                    {"id": f"rep-{c}-{i}", "name": f"Rep {c} {i}", "capacity": 100_000}
                    for i in range(REPS_PER_TEAM)
                ],
            }
            for c in COUNTRIES
        ],
    }
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


async def run(quick: bool) -> Result:
    window_s = 20 if quick else 60
    result = Result("scale")
    settings = await fresh_settings(topic_partitions=PARTITIONS)
    await ensure_topics(settings)
    services = [Service("ingest", settings, LOG_DIR, "scale-ingest")]
    services += [
        Service(n, settings, LOG_DIR, f"scale-{n}-{i}")
        for n in ("scoring", "handoff")
        for i in (1, 2)
    ]
    services[0].env.update(
        LEADROUTER_RATE_LIMIT_PER_S="1000000", LEADROUTER_RATE_LIMIT_BURST="1000000"
    )
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    playbook = scale_playbook(LOG_DIR / "scale-playbook.yaml")
    for service in services:
        service.env["LEADROUTER_PLAYBOOK"] = str(playbook)
        service.env.pop("LEADROUTER_CONSUMER_POLL_TIMEOUT_MS", None)
        service.env.pop("LEADROUTER_OUTBOX_IDLE_POLL_S", None)
    await asyncio.gather(*(s.start() for s in services))
    load = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [
            sys.executable,
            "-m",
            "bench.load",
            services[0].url,
            str(RATE_PER_S),
            str(QUALIFYING_EVERY),
            ",".join(COUNTRIES),
        ],
        cwd=REPO_ROOT,
    )
    dsn = plain_dsn(settings)
    conn = await asyncpg.connect(dsn)
    database = await conn.fetchval("select current_database()")
    try:
        await asyncio.sleep(10)  # the groups settle, both instances get their partitions
        before_logs = {s.instance: s.log_path.read_text(errors="replace") for s in services}
        samples = [ProcessSample(s.instance, s.pid or 0) for s in services]
        for sample in samples:
            sample.begin()
        backends_before = await postgres_cpu(conn, database)
        counts_before = await counts(services)
        tables_before = await table_updates(conn)
        load_start = os.getloadavg()
        started = time.monotonic()
        waits: Counter[str] = Counter()
        holders: Counter[str] = Counter()  # what the transactions waited for were doing
        polls = waiting_polls = 0
        progress(f"  scale: {RATE_PER_S} events/s for {window_s}s over {PARTITIONS} partitions")
        while time.monotonic() - started < window_s:
            rows = await conn.fetch(
                "select wait_event, left(query, 60) as query from pg_stat_activity"
                " where datname = $1 and wait_event_type = 'Lock'",
                database,
            )
            polls += 1
            if rows:
                waiting_polls += 1
            for row in rows:
                waits[f"{row['wait_event']}: {row['query']}"] += 1
            for row in await conn.fetch(HOLDERS, database):
                holders[f"{row['state']}: {row['query']}"] += 1
            for sample in samples:
                sample.sample()
            backends_after = await postgres_cpu(conn, database)
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        for sample in samples:
            sample.sample()
        counts_after = await counts(services)
        tables_after = await table_updates(conn)
        load_end = os.getloadavg()
        after_logs = {s.instance: s.log_path.read_text(errors="replace") for s in services}
        for service in services[1:]:
            n, records, seconds = await batches(service.url)
            if n:
                result.notes.append(
                    f"{service.instance}: {n:.0f} transactions, {records / n:.1f} records and"
                    f" {seconds / n * 1000:.1f} ms each on average"
                )
    finally:
        load.terminate()
        load.wait(10)
        await conn.close()
        for service in services:
            service.stop()

    handled = {k: counts_after.get(k, 0) - counts_before.get(k, 0) for k in counts_after}
    per_service: dict[str, float] = {}
    for sample in samples:
        events = handled.get(sample.name, 0)
        kind = sample.name.split("-")[1]
        per_service[kind] = per_service.get(kind, 0) + events
        result.processes.append(
            {"process": sample.name, "cpu_s": sample.cpu_s, "peak_rss_mb": sample.peak_rss_mb}
        )
        result.figures.append(Figure(f"events handled, {sample.name}", events, "events"))
        if events:
            result.figures.append(
                Figure(f"CPU µs per event, {sample.name}", sample.cpu_s * 1e6 / events, "µs")
            )
    for kind in ("ingest", "scoring", "handoff"):
        cpu = sum(s.cpu_s for s in samples if s.name.split("-")[1] == kind)
        if per_service.get(kind):
            result.figures.append(
                Figure(
                    f"CPU µs per event, {kind} (all instances)",
                    cpu * 1e6 / per_service[kind],
                    "µs",
                )
            )
    postgres_s = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    if per_service.get("ingest"):
        result.figures.append(
            Figure(
                "PostgreSQL CPU µs per ingested event (its backends)",
                postgres_s * 1e6 / per_service["ingest"],
                "µs",
            )
        )
        result.figures.append(
            Figure("events/s ingested", per_service["ingest"] / elapsed, "events/s")
        )
    result.figures.append(
        Figure(
            "lock-wait samples, share of 100 ms polls",
            waiting_polls / max(polls, 1),
            "",
            target=("max", 0.05),
        )
    )
    rebalances = sum(
        len(ASSIGNED.findall(after_logs[s.instance][len(before_logs[s.instance]) :]))
        for s in services
    )
    result.figures.append(Figure("rebalances during the window", rebalances, "", target=("max", 0)))
    result.notes.append(
        f"{RATE_PER_S} events/s for {elapsed:.0f}s over {PARTITIONS} partitions; load average"
        f" {' '.join(f'{x:.2f}' for x in load_start)} at the start,"
        f" {' '.join(f'{x:.2f}' for x in load_end)} at the end"
    )
    result.notes.append(
        "partitions per instance: "
        + "; ".join(f"{s.instance}: {assigned(after_logs[s.instance])}" for s in services[1:])
    )
    result.notes.append(
        f"lock waits: {waiting_polls} of {polls} polls; "
        + (", ".join(f"{k} x{v}" for k, v in waits.most_common(5)) or "none")
    )
    result.notes.append(
        "their lock holders were: "
        + (", ".join(f"{k} x{v}" for k, v in holders.most_common(4)) or "none")
    )
    hot = sorted(
        (
            (name, upd - tables_before.get(name, (0, 0))[0], live)
            for name, (upd, live) in tables_after.items()
        ),
        key=lambda t: -(t[1] / max(t[2], 1)),
    )[:5]
    result.notes.append(
        "updates per live row in the window (hot rows): "
        + ", ".join(f"{n} {u} updates / {live} rows" for n, u, live in hot if u)
    )
    return result


def assigned(log: str) -> str:
    """The partitions named in an instance's last assignment line."""
    lines = [line for line in log.splitlines() if ASSIGNED.search(line)]
    if not lines:
        return "none"
    return ", ".join(sorted(set(re.findall(r"partition=(\d+)", lines[-1])), key=int))


async def counts(services: list[Service]) -> dict[str, float]:
    """Events each instance handled so far, from its own /metrics."""
    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for service in services:
            text = (await client.get(f"{service.url}/metrics")).text
            if service.name == "ingest":
                pattern = r'^leadrouter_ingest_events_total\{[^}]*outcome="accepted"[^}]*\} (\S+)'
            else:
                pattern = (
                    r'^leadrouter_consumer_events_total\{[^}]*outcome="processed"[^}]*\} (\S+)'
                )
            out[service.instance] = sum(float(v) for v in re.findall(pattern, text, re.M))
    return out


async def postgres_cpu(conn: asyncpg.Connection, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to this database."""
    pids = await conn.fetch("select pid from pg_stat_activity where datname = $1", database)
    out: dict[int, float] = {}
    for row in pids:
        try:
            times = psutil.Process(row["pid"]).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[row["pid"]] = times.user + times.system
    return out


async def table_updates(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Rows updated so far and live rows, per table of this database."""
    rows = await conn.fetch(
        "select relname, n_tup_upd + n_tup_del as upd, n_live_tup from pg_stat_user_tables"
    )
    return {r["relname"]: (int(r["upd"]), int(r["n_live_tup"])) for r in rows}


async def batches(url: str) -> tuple[float, float, float]:
    """A consumer service's transactions so far: how many, records in them, seconds in them."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)", text, re.M))

    return (
        total("leadrouter_consumer_batch_size_count"),
        total("leadrouter_consumer_batch_size_sum"),
        total("leadrouter_consumer_batch_duration_seconds_sum"),
    )
