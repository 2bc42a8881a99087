"""Speed to lead: POST of a qualifying event until its handoff event is readable on the
handoffs topic by a plain consumer, with 1,000 non-qualifying events/s posted meanwhile by a
load process of its own. All three services run.

Besides the end-to-end figure, each probe's hops are timed from outside: when its lead event
became readable on lead-events (read_committed: ingest's transaction committed), its
lifecycle event on lead-lifecycle (scoring's transaction and relay) and its handoff on
handoffs (handoff's transaction and relay); the medians say which hop the time goes to."""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer

from bench.env import LOG_DIR, ProcessSample, fresh_settings, progress
from bench.result import Figure, Result
from harness.processes import Service
from shared.kafka import HANDOFFS, LEAD_EVENTS, LEAD_LIFECYCLE, ensure_topics
from shared.settings import REPO_ROOT

PROBE_KEY = b"email:probe"
# The issue's load; LEADROUTER_BENCH_BACKGROUND_PER_S=1 shows the hops' floor on an idle pipeline.
BACKGROUND_PER_S = int(os.environ.get("LEADROUTER_BENCH_BACKGROUND_PER_S", "1000"))


async def run(quick: bool) -> Result:
    probes = 40 if quick else 200
    result = Result("speed_to_lead")
    settings = await fresh_settings()
    await ensure_topics(settings)
    services = {n: Service(n, settings, LOG_DIR) for n in ("ingest", "scoring", "handoff")}
    services["ingest"].env.update(
        LEADROUTER_RATE_LIMIT_PER_S="1000000", LEADROUTER_RATE_LIMIT_BURST="1000000"
    )
    for service in services.values():
        await service.start()
    samples = [ProcessSample(n, s.pid or 0) for n, s in services.items()]
    for sample in samples:
        sample.begin()
    # One watcher per topic, each keeping when a probe's record first became readable. The
    # probes' keys are recognised without decoding, so 1,000 background events/s cost little.
    hops = (LEAD_EVENTS, LEAD_LIFECYCLE, HANDOFFS)
    seen_on: dict[str, dict[str, float]] = {topic: {} for topic in hops}
    # The record's own timestamp (set when its producer sent it), as a perf_counter time: it
    # splits each hop into the service's work up to the send and the send until readable.
    sent_on: dict[str, dict[str, float]] = {topic: {} for topic in hops}
    # A handoff event's `time` is when handoff's transaction read the clock (Postgres' now(),
    # the transaction's start): it splits the last hop into the wait until the handoff
    # consumer's transaction began, the transaction and relay up to the send, and the rest.
    began_on: dict[str, float] = {}
    seen = seen_on[HANDOFFS]
    consumers = [
        AIOKafkaConsumer(
            settings.topic(topic),
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=5,
        )
        for topic in hops
    ]
    for consumer in consumers:
        await consumer.start()

    async def watch(consumer: AIOKafkaConsumer, topic: str) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now, wall = time.perf_counter(), time.time()
            for records in batches.values():
                for record in records:
                    if record.key and record.key.startswith(PROBE_KEY):
                        key = record.key.decode()
                        seen_on[topic].setdefault(key, now)
                        sent_on[topic].setdefault(key, now - (wall - record.timestamp / 1000))
                        if topic == HANDOFFS and key not in began_on:
                            began = datetime.fromisoformat(json.loads(record.value)["time"])
                            began_on[key] = now - (wall - began.timestamp())

    watchers = [asyncio.create_task(watch(c, t)) for c, t in zip(consumers, hops, strict=True)]
    load = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [sys.executable, "-m", "bench.load", services["ingest"].url, str(BACKGROUND_PER_S)],
        cwd=REPO_ROOT,
    )
    latencies_ms: list[float] = []
    hop_ms: dict[str, list[float]] = {}
    missing = 0
    try:
        await asyncio.sleep(3)  # let the background traffic settle
        posted: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(probes):
                email = f"probe{i}-{uuid.uuid4().hex[:6]}@speed.example"
                body = {
                    "id": f"probe-{uuid.uuid4()}",
                    "identity": {"email": email},
                    "attributes": {"company": "Speed", "company_size": 500, "country": "DE"},
                    "activity": {
                        "type": "demo_request",
                        "occurred_at": datetime.now(UTC).isoformat(),
                    },
                }
                posted[f"email:{email}"] = time.perf_counter()
                response = await client.post(f"{services['ingest'].url}/v1/events", json=body)
                response.raise_for_status()
                for sample in samples:
                    sample.sample()
                await asyncio.sleep(0.2)
                if i % 20 == 0:
                    progress(f"  probe {i}/{probes}, handoffs seen {len(seen)}")
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not all(k in seen for k in posted):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for key, at in posted.items():
            if key in seen:
                latencies_ms.append((seen[key] - at) * 1000)
            else:
                missing += 1
            previous, since = "POST", at
            for topic in hops:
                if key in seen_on[topic]:
                    sent, readable = sent_on[topic][key], seen_on[topic][key]
                    hop = f"{previous} -> {topic}"
                    hop_ms.setdefault(hop, []).append((readable - since) * 1000)
                    hop_ms.setdefault(f"{hop} sent", []).append((sent - since) * 1000)
                    if topic == HANDOFFS and key in began_on:
                        hop_ms.setdefault(f"{hop} transaction began", []).append(
                            (began_on[key] - since) * 1000
                        )
                    previous, since = topic, readable
    finally:
        load.terminate()
        load.wait(10)
        for watcher in watchers:
            watcher.cancel()
        for consumer in consumers:
            await consumer.stop()
        for sample in samples:
            sample.sample()
        for service in services.values():
            service.stop()
    result.processes += [
        {"process": s.name, "cpu_s": s.cpu_s, "peak_rss_mb": s.peak_rss_mb} for s in samples
    ]
    quantiles = statistics.quantiles(latencies_ms, n=100) if len(latencies_ms) > 1 else [0.0] * 99
    result.figures += [
        Figure(
            f"speed to lead p50 ms, {BACKGROUND_PER_S:,} events/s background",
            quantiles[49],
            "ms",
            target=("max", 50),
        ),
        Figure(
            f"speed to lead p99 ms, {BACKGROUND_PER_S:,} events/s background",
            quantiles[98],
            "ms",
            target=("max", 250),
        ),
        Figure("handoffs missing", float(missing), "", target=("max", 0)),
    ]
    for hop, values in hop_ms.items():
        result.figures.append(Figure(f"hop {hop} p50 ms", statistics.median(values), "ms"))
    for sample in samples:
        result.figures.append(
            Figure(f"peak RSS MB, {sample.name}", sample.peak_rss_mb, "MB", target=("max", 200))
        )
    result.series["speed to lead (ms)"] = latencies_ms
    return result
