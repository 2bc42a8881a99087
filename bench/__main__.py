"""`make bench`: throughput of the real services on the local Kafka and PostgreSQL.

Each figure is reported with a baseline measured in the same run, so the ratio means
something on a shared, noisy machine; absolute numbers are for orientation only.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from harness.processes import Service
from shared.events import LEAD_ACTIVITY, CloudEvent
from shared.kafka import LEAD_EVENTS, ensure_topics, make_producer
from shared.migrate import upgrade_async
from shared.settings import Settings

BASE_URL = os.environ.get(
    "LEADROUTER_BENCH_DATABASE_URL",
    "postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:5432/leadrouter",
)


CREATED: list[str] = []

ADMIN_DSN = make_url(BASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def fresh_settings() -> Settings:
    """A new database and topic namespace, so runs never see each other's data."""
    name = f"leadrouter_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(ADMIN_DSN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    CREATED.append(name)
    url = make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    await upgrade_async(url)
    return Settings(database_url=url, topic_namespace=f"bench{uuid.uuid4().hex[:8]}")


def native(i: int, leads: int) -> dict:
    return {
        "id": f"bench-{i}",
        "identity": {"email": f"lead{i % leads}@bench.example"},
        "attributes": {"company": "Bench", "company_size": 100 + i % 900},
        "activity": {
            "type": ("page_view", "email_open", "pricing_page_view")[i % 3],
            "occurred_at": "2026-11-23T09:00:00Z",
        },
    }


async def bench_ingest(events: int, per_request: int) -> float:
    """Events/s through POST /v1/events with `per_request` events in each request."""
    settings = await fresh_settings()
    service = Service("ingest", settings, Path(os.environ.get("TMPDIR", "/tmp")))
    # Measure throughput, not the per-source rate limit.
    service.env.update(LEADROUTER_RATE_LIMIT_PER_S="1000000", LEADROUTER_RATE_LIMIT_BURST="1000000")
    await service.start()
    try:
        bodies = [
            [native(i, 1000) for i in range(start, min(start + per_request, events))]
            for start in range(0, events, per_request)
        ]
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=8)) as client:
            sem = asyncio.Semaphore(8)

            async def post(body):
                async with sem:
                    response = await client.post(f"{service.url}/v1/events", json=body)
                    response.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(post(b) for b in bodies))
            return events / (time.perf_counter() - started)
    finally:
        service.stop()


async def bench_scoring(events: int, batch_max: int) -> float:
    """Events/s scoring takes from a pre-filled lead-events topic with this batch size."""
    settings = await fresh_settings()
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    topic = settings.topic(LEAD_EVENTS)
    try:
        acks = []
        for i in range(events):
            data = native(i, 2000)
            event = CloudEvent(
                id=str(uuid.uuid4()),
                source="bench",
                type=LEAD_ACTIVITY,
                time=data["activity"]["occurred_at"],
                subject=f"email:{data['identity']['email']}",
                data={**data, "identity": {**data["identity"], "external_ids": {}}},
            )
            acks.append(await producer.send(topic, event.to_bytes(), key=event.subject.encode()))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    service = Service("scoring", settings, Path(os.environ.get("TMPDIR", "/tmp")))
    service.env["LEADROUTER_CONSUMER_BATCH_MAX"] = str(batch_max)
    dsn = (
        make_url(settings.database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    conn = await asyncpg.connect(dsn)
    try:
        await service.start()
        started = time.perf_counter()
        while True:
            done = await conn.fetchval(
                "select coalesce(sum(next_offset), 0) from consumer_offsets where topic = $1", topic
            )
            if done >= events:
                return events / (time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
        service.stop()


async def drop_databases() -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for name in CREATED:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main(quick: bool) -> dict:
    try:
        return await run(quick)
    finally:
        await drop_databases()


async def run(quick: bool) -> dict:
    n = 4000 if quick else 20000
    results: dict = {}
    progress(f"ingest: {n} events, 1 per request (baseline)")
    single = await bench_ingest(n // 10, 1)
    progress(f"ingest: {n} events, 100 per request")
    batched = await bench_ingest(n, 100)
    results["ingest_events_per_s"] = {
        "1_per_request": round(single),
        "100_per_request": round(batched),
        "ratio": round(batched / single, 1),
    }
    progress(f"scoring: {n // 4} events, batch 1 (baseline)")
    one = await bench_scoring(n // 4, 1)
    progress(f"scoring: {n} events, batch 500")
    many = await bench_scoring(n, 500)
    results["scoring_events_per_s"] = {
        "batch_1": round(one),
        "batch_500": round(many),
        "ratio": round(many / one, 1),
    }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick)), indent=2))
