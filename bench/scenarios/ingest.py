"""Ingest under wrk (its own process): one event per request against a bare FastAPI endpoint
under the same uvicorn settings, and 100 per request against raw aiokafka produce of the
same records with the same acks and idempotence. Throughput on a shared machine is noisy, so
each side's CPU time per request (or per event) is reported too: the cost that does not
depend on what else runs."""

import asyncio
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx

from bench.env import LOG_DIR, ProcessSample, fresh_settings, progress
from bench.result import Figure, Result
from harness.processes import Service, eventually, free_port
from shared.kafka import LEAD_EVENTS, ensure_topics, make_producer
from shared.settings import REPO_ROOT, Settings

SCRIPT = REPO_ROOT / "bench" / "wrk" / "events.lua"


def wrk(url: str, seconds: int, per_request: int, connections: int = 16) -> dict[str, float]:
    """Requests/s, requests, latency p50/p99 (ms) and non-2xx count of a wrk run."""
    occurred = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(SCRIPT),
            url,
            "--",
            occurred,
            str(per_request),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label: str) -> float:
        found = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rate,
        "requests": requests,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


async def bare_baseline(seconds: int, per_request: int) -> tuple[float, float]:
    """Requests/s of the bare endpoint under the same uvicorn settings as the services, and
    its CPU µs per request."""
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (
                    await client.post(f"http://127.0.0.1:{port}/v1/events", json={})
                ).status_code == 202
        except httpx.HTTPError:
            return False

    try:
        await eventually(up, 30, "the bare FastAPI app")
        sample = ProcessSample("bare", process.pid)
        sample.begin()
        run = wrk(f"http://127.0.0.1:{port}", seconds, per_request)
        sample.sample()
        return run["rps"], 1e6 * sample.cpu_s / run["requests"]
    finally:
        process.terminate()
        process.wait(10)


async def raw_produce(
    settings: Settings, events: int, per_request: int, concurrency: int = 16
) -> tuple[float, float]:
    """Events/s of aiokafka producing the same records (acks=all, idempotent), `per_request`
    at a time from `concurrency` senders that each wait for their records' acks; and the CPU
    µs per event this process spent on it."""
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    topic = settings.topic(LEAD_EVENTS)
    occurred = datetime.now(UTC).isoformat()
    record = (
        '{"specversion":"1.0","id":"%s","source":"bench","type":"leadrouter.lead.activity",'
        '"time":"' + occurred + '","subject":"email:lead%d@wrk.example","datacontenttype":'
        '"application/json","data":{"identity":{"email":"lead%d@wrk.example","external_ids":{}},'
        '"attributes":{"company":"Wrk","company_size":1},"activity":{"type":"page_view",'
        '"occurred_at":"' + occurred + '","properties":{"path":"/blog"}}}}'
    )
    queue = list(range(0, events, per_request))

    async def sender() -> None:
        while queue:
            start = queue.pop()
            acks = []
            for n in range(start, start + per_request):
                value = (record % (uuid.uuid4(), n % 5000, n % 5000)).encode()
                acks.append(
                    await producer.send(
                        topic, value, key=f"email:lead{n % 5000}@wrk.example".encode()
                    )
                )
            await asyncio.gather(*acks)

    try:
        started = time.perf_counter()
        cpu_started = time.process_time()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        cpu_us = 1e6 * (time.process_time() - cpu_started) / events
        return events / (time.perf_counter() - started), cpu_us
    finally:
        await producer.stop()


async def run(quick: bool) -> Result:
    seconds = 5 if quick else 15
    result = Result("ingest")
    settings = await fresh_settings()
    service = Service("ingest", settings, LOG_DIR)
    # Measure throughput, not the per-source rate limit.
    service.env.update(
        LEADROUTER_RATE_LIMIT_PER_S="10000000", LEADROUTER_RATE_LIMIT_BURST="10000000"
    )
    await service.start()
    assert service.pid is not None
    sample = ProcessSample("ingest", service.pid)
    sample.begin()
    try:
        progress("  wrk: ingest, 1 event per request")
        single = wrk(service.url, seconds, 1)
        sample.sample()
        single_cpu_s = sample.cpu_s
        progress("  wrk: ingest, 100 events per request")
        batched = wrk(service.url, seconds, 100, connections=8)
        sample.sample()
        batched_cpu_s = sample.cpu_s - single_cpu_s
    finally:
        service.stop()
    result.processes.append(
        {"process": "ingest", "cpu_s": sample.cpu_s, "peak_rss_mb": sample.peak_rss_mb}
    )
    progress("  wrk: bare FastAPI endpoint, 1 event per request")
    bare, bare_cpu_us = await bare_baseline(seconds, 1)
    progress("  raw aiokafka produce of the same records")
    raw, raw_cpu_us = await raw_produce(
        settings, int(batched["rps"] * 100 * min(seconds, 5)), 100, concurrency=8
    )
    result.figures += [
        Figure(
            "ingest requests/s, 1 event per request",
            single["rps"],
            "req/s",
            baseline=bare,
            baseline_name="bare FastAPI endpoint, same uvicorn",
            target=("min_ratio", 0.35),
        ),
        Figure(
            "ingest events/s, 1 event per request (absolute)",
            single["rps"],
            "events/s",
            target=("min", 2000),
        ),
        Figure(
            "ingest events/s, 100 per request",
            batched["rps"] * 100,
            "events/s",
            baseline=raw,
            baseline_name="raw aiokafka produce, acks=all, idempotent",
            target=("min_ratio", 0.6),
        ),
        Figure(
            "ingest events/s, 100 per request (absolute)",
            batched["rps"] * 100,
            "events/s",
            target=("min", 20000),
        ),
        Figure("ingest p99 ms, 1 event per request", single["p99_ms"], "ms"),
        Figure(
            "ingest CPU µs per request, 1 event per request",
            1e6 * single_cpu_s / single["requests"],
            "µs",
            baseline=bare_cpu_us,
            baseline_name="bare FastAPI endpoint's CPU µs per request",
        ),
        Figure(
            "ingest CPU µs per event, 100 per request",
            1e6 * batched_cpu_s / (100 * batched["requests"]),
            "µs",
            baseline=raw_cpu_us,
            baseline_name="raw aiokafka produce's CPU µs per event",
        ),
    ]
    result.notes.append(
        f"non-2xx answers under wrk: {single['errors']:.0f} (1 per request), "
        f"{batched['errors']:.0f} (100 per request)"
    )
    return result
