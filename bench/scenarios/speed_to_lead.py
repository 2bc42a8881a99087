"""Speed to lead: POST of a qualifying event until its handoff event is readable on the
handoffs topic by a plain consumer, with 1,000 non-qualifying events/s posted meanwhile by a
load process of its own. All three services run."""

import asyncio
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
from shared.events import CloudEvent
from shared.kafka import HANDOFFS, ensure_topics
from shared.settings import REPO_ROOT


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
    consumer = AIOKafkaConsumer(
        settings.topic(HANDOFFS),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: dict[str, float] = {}

    async def watch() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    subject = CloudEvent.from_bytes(record.value or b"").subject
                    seen.setdefault(subject, now)

    watcher = asyncio.create_task(watch())
    load = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [sys.executable, "-m", "bench.load", services["ingest"].url, "1000"], cwd=REPO_ROOT
    )
    latencies_ms: list[float] = []
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
    finally:
        load.terminate()
        load.wait(10)
        watcher.cancel()
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
            "speed to lead p50 ms, 1,000 events/s background",
            quantiles[49],
            "ms",
            target=("max", 50),
        ),
        Figure(
            "speed to lead p99 ms, 1,000 events/s background",
            quantiles[98],
            "ms",
            target=("max", 250),
        ),
        Figure("handoffs missing", float(missing), "", target=("max", 0)),
    ]
    for sample in samples:
        result.figures.append(
            Figure(f"peak RSS MB, {sample.name}", sample.peak_rss_mb, "MB", target=("max", 200))
        )
    result.series["speed to lead (ms)"] = latencies_ms
    return result
