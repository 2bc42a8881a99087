"""The speed-to-lead probe, a process of its own: it posts qualifying events through HTTP and
reads the handoffs topic as a sales tool would, and times each probe's hops on the way.

    python -m bench.probe --ingest URL --bootstrap HOST:PORT --namespace NS --dsn DSN \
        --probes 300 --interval 0.1 --out probes.json

It is neither the load generator (bench/load.py) nor a service, so its own CPU and event loop
neither slow the services nor hide their stalls. Every time is wall-clock seconds on this
machine's clock, which Kafka's record timestamps and PostgreSQL's now() share, so the hops of
one probe can be subtracted:

- posted: the POST left;
- lead_events_sent: the record's timestamp (ingest's producer sent it, in a Kafka transaction);
- acked: the 202 came back (ingest's transaction committed);
- lead_events_readable: when a read_committed consumer first saw it;
- scoring_began: processed_at of the record's offset in scoring's processed_events, i.e.
  scoring's transaction's now(): the wait from readable to here is scoring's fetch and queue;
- lifecycle_sent / _readable: the outbox relay's send and when it became readable;
- handoff_began: the same for handoff's transaction, from the lifecycle record's offset;
- handoffs_sent / _readable: handoff's relay's send and when a sales tool could read it.
"""

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

PROBE_PREFIX = b"email:probe"
TOPICS = {"lead-events": "lead_events", "lead-lifecycle": "lifecycle", "handoffs": "handoffs"}
# The hops in the order a probe passes them, each measured from the previous mark.
MARKS = [
    "posted",
    "lead_events_sent",
    "acked",
    "lead_events_readable",
    "scoring_began",
    "lifecycle_sent",
    "lifecycle_readable",
    "handoff_began",
    "handoffs_sent",
    "handoffs_readable",
]


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    probes: dict[str, dict[str, Any]] = {}  # lead key -> marks
    consumers = {
        short: AIOKafkaConsumer(
            f"{args.namespace}.{short}.v1",
            bootstrap_servers=args.bootstrap,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=5,
        )
        for short in TOPICS
    }
    for consumer in consumers.values():
        await consumer.start()
        # Position at the end now, so a probe posted right after is not missed.
        await consumer.getmany(timeout_ms=200)

    async def watch(short: str, consumer: AIOKafkaConsumer) -> None:
        mark = TOPICS[short]
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    if not (record.key and record.key.startswith(PROBE_PREFIX)):
                        continue  # background traffic, recognised without decoding
                    marks = probes.get(record.key.decode())
                    if marks is None or f"{mark}_readable" in marks:
                        continue
                    marks[f"{mark}_readable"] = now
                    marks[f"{mark}_sent"] = record.timestamp / 1000
                    marks[f"{mark}_at"] = [record.topic, record.partition, record.offset]

    watchers = [asyncio.create_task(watch(s, c)) for s, c in consumers.items()]
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            next_at = time.perf_counter()
            for i in range(args.probes):
                email = f"probe{i}-{uuid.uuid4().hex[:6]}@speed.example"
                event_id = f"probe-{uuid.uuid4()}"
                body = {
                    "id": event_id,
                    "identity": {"email": email},
                    "attributes": {"company": "Speed", "company_size": 500, "country": "DE"},
                    "activity": {
                        "type": "demo_request",
                        "occurred_at": datetime.now(UTC).isoformat(),
                    },
                }
                marks: dict[str, Any] = {"id": event_id, "posted": time.time()}
                probes[f"email:{email}"] = marks
                response = await client.post(f"{args.ingest}/v1/events", json=body)
                marks["acked"] = time.time()
                response.raise_for_status()
                next_at += args.interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + args.wait
        while time.perf_counter() < deadline and not all(  # noqa: ASYNC110
            "handoffs_readable" in m for m in probes.values()
        ):
            await asyncio.sleep(0.1)
    finally:
        for watcher in watchers:
            watcher.cancel()
        for consumer in consumers.values():
            await consumer.stop()
    # When scoring's and handoff's transactions began for each probe: the processed_at (the
    # transaction's now()) of the record they consumed, found by its topic, partition, offset.
    conn = await asyncpg.connect(args.dsn)
    try:
        for service, consumed in (("scoring", "lead_events_at"), ("handoff", "lifecycle_at")):
            where = [m[consumed] for m in probes.values() if consumed in m]
            rows = await conn.fetch(
                "select topic, partition, kafka_offset,"
                " extract(epoch from processed_at)::float8 as at from processed_events"
                " where consumer_group = $1 and (topic, partition, kafka_offset) in"
                " (select * from unnest($2::text[], $3::int[], $4::bigint[]))",
                f"{args.namespace}-{service}",
                [w[0] for w in where],
                [w[1] for w in where],
                [w[2] for w in where],
            )
            began = {(r["topic"], r["partition"], r["kafka_offset"]): r["at"] for r in rows}
            for marks in probes.values():
                at = tuple(marks.get(consumed, ()))
                if at in began:
                    marks[f"{service}_began"] = began[at]
    finally:
        await conn.close()
    return list(probes.values())


def hops(marks: dict[str, Any]) -> dict[str, float]:
    """A probe's hops in ms, each from the last mark present before it."""
    out: dict[str, float] = {}
    previous = "posted"
    for mark in MARKS[1:]:
        if mark in marks:
            out[f"{previous} -> {mark}"] = (marks[mark] - marks[previous]) * 1000
            previous = mark
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("--ingest", required=True, help="ingest's base URL")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--namespace", required=True, help="the services' topic namespace")
    parser.add_argument("--dsn", required=True, help="the services' database (asyncpg DSN)")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for the last")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    arguments.out.write_text(json.dumps(asyncio.run(run(arguments))))
