"""Speed to lead from outside: a probe process (bench/probe.py) posts qualifying events through
HTTP and reads the handoffs topic as a sales tool would, while a load process of its own
(bench/load.py) posts 1,000 non-qualifying events/s, and ingest, scoring and handoff run as
real processes with the settings `make run` gives them (no bench-only poll intervals).

Besides p50 and p99, each probe's latency is split into hops (see bench/probe.py) and the
slowest 1% are compared hop by hop with the median probe: the hop that adds most to the tail
is named in the report, which is where to look before tuning averages."""

import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import httpx

from bench.env import LOG_DIR, REPORT_DIR, ProcessSample, fresh_settings, plain_dsn
from bench.probe import hops
from bench.result import Figure, Result
from bench.scenarios.scale import batches
from harness.processes import Service
from shared.kafka import ensure_topics
from shared.settings import REPO_ROOT

# The issue's load; LEADROUTER_BENCH_BACKGROUND_PER_S=1 shows the hops' floor on an idle pipeline.
BACKGROUND_PER_S = int(os.environ.get("LEADROUTER_BENCH_BACKGROUND_PER_S", "1000"))
# Settings harness.processes.Service gives every service for the tests' sake; `make run` does
# not, and this scenario measures what `make run` gives.
TEST_ONLY_SETTINGS = ("LEADROUTER_CONSUMER_POLL_TIMEOUT_MS", "LEADROUTER_OUTBOX_IDLE_POLL_S")


async def run(quick: bool) -> Result:
    probes = 100 if quick else 400
    result = Result("speed_to_lead")
    settings = await fresh_settings()
    await ensure_topics(settings)
    services = {n: Service(n, settings, LOG_DIR) for n in ("ingest", "scoring", "handoff")}
    services["ingest"].env.update(
        LEADROUTER_RATE_LIMIT_PER_S="1000000", LEADROUTER_RATE_LIMIT_BURST="1000000"
    )
    for service in services.values():
        for name in TEST_ONLY_SETTINGS:
            service.env.pop(name, None)
        await service.start()
    samples = [ProcessSample(n, s.pid or 0) for n, s in services.items()]
    for sample in samples:
        sample.begin()
    load = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [sys.executable, "-m", "bench.load", services["ingest"].url, str(BACKGROUND_PER_S)],
        cwd=REPO_ROOT,
    )
    out = REPORT_DIR / f"probes-{settings.topic_namespace}.json"
    load_average = os.getloadavg()
    try:
        await asyncio.sleep(3)  # let the background traffic settle
        probe = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [
                sys.executable,
                "-m",
                "bench.probe",
                "--ingest",
                services["ingest"].url,
                "--bootstrap",
                settings.kafka_bootstrap,
                "--namespace",
                settings.topic_namespace,
                "--dsn",
                plain_dsn(settings),
                "--probes",
                str(probes),
                "--out",
                str(out),
            ],
            cwd=REPO_ROOT,
        )
        started = time.monotonic()
        while probe.poll() is None:
            for sample in samples:
                sample.sample()
            await asyncio.sleep(0.5)
            if time.monotonic() - started > 600:
                probe.kill()
                raise AssertionError("the probe process ran for 10 minutes")
        if probe.returncode != 0:
            raise AssertionError(f"the probe process failed with {probe.returncode}")
        load_average = os.getloadavg()
        for name in ("scoring", "handoff"):
            n, records, seconds = await batches(services[name].url)
            if n:
                result.notes.append(
                    f"{name}: {n:.0f} transactions, {records / n:.1f} records and"
                    f" {seconds / n * 1000:.1f} ms each on average"
                )
        for name, service in services.items():
            result.notes.append(f"{name}: garbage collections {await gc_pauses(service.url)}")
    finally:
        load.terminate()
        load.wait(10)
        for sample in samples:
            sample.sample()
        for service in services.values():
            service.stop()
    result.processes += [
        {"process": s.name, "cpu_s": s.cpu_s, "peak_rss_mb": s.peak_rss_mb} for s in samples
    ]
    marks = json.loads(out.read_text())
    result.figures += figures(marks)
    result.notes += tail_notes(marks)
    result.notes.append(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in load_average)}; probes: {out}"
    )
    for sample in samples:
        result.figures.append(
            Figure(f"peak RSS MB, {sample.name}", sample.peak_rss_mb, "MB", target=("max", 200))
        )
    result.series["speed to lead (ms)"] = [
        (m["handoffs_readable"] - m["posted"]) * 1000 for m in marks if "handoffs_readable" in m
    ]
    return result


async def gc_pauses(url: str) -> str:
    """A service's garbage collections so far, per generation: how many, their total pause and
    its CPU and the bucket of the longest (a collection stalls everything in flight there)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    said = []
    for generation in range(3):
        label = f'generation="{generation}"'
        count = _sample(text, "leadrouter_gc_pause_seconds_count", label)
        if not count:
            continue
        total_s = _sample(text, "leadrouter_gc_pause_seconds_sum", label)
        cpu_s = _sample(text, "leadrouter_gc_cpu_seconds_total", label)
        longest = next(
            le
            for le, n in re.findall(
                rf'^leadrouter_gc_pause_seconds_bucket\{{{label},le="([^"]+)"\}} (\S+)', text, re.M
            )
            if float(n) >= count
        )
        said.append(
            f"gen {generation}: {count:.0f}, {total_s * 1000:.0f} ms in all ({cpu_s * 1000:.0f} ms "
            f"CPU), longest <= {longest} s"
        )
    return "; ".join(said) or "none"


def _sample(text: str, name: str, label: str) -> float:
    found = re.search(rf"^{name}\{{{label}\}} (\S+)", text, re.M)
    return float(found.group(1)) if found else 0.0


def figures(marks: list[dict[str, float]]) -> list[Figure]:
    """p50 and p99 from post to readable handoff, missing handoffs, each hop's p50 and p99."""
    done = [m for m in marks if "handoffs_readable" in m]
    latencies = [(m["handoffs_readable"] - m["posted"]) * 1000 for m in done]
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    out = [
        Figure(
            f"speed to lead p50 ms, {BACKGROUND_PER_S:,} events/s background",
            q[49],
            "ms",
            target=("max", 50),
        ),
        Figure(
            f"speed to lead p99 ms, {BACKGROUND_PER_S:,} events/s background",
            q[98],
            "ms",
            target=("max", 200),
        ),
        Figure("handoffs missing", float(len(marks) - len(done)), "", target=("max", 0)),
    ]
    by_hop: dict[str, list[float]] = {}
    for m in done:
        for hop, ms in hops(m).items():
            by_hop.setdefault(hop, []).append(ms)
    for hop, values in by_hop.items():
        hq = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
        out.append(Figure(f"hop {hop} p50 ms", hq[49], "ms"))
        out.append(Figure(f"hop {hop} p99 ms", hq[98], "ms"))
    return out


def tail_notes(marks: list[dict[str, float]]) -> list[str]:
    """What the slowest 1% (and 5%) wait for: each hop's mean in the tail against its median
    over every probe; the hop with the largest excess dominates the tail."""
    done = sorted(
        (m for m in marks if "handoffs_readable" in m),
        key=lambda m: m["handoffs_readable"] - m["posted"],
    )
    if len(done) < 2:
        return ["too few probes for a tail"]
    medians: dict[str, float] = {}
    for hop in hops(done[0]):
        medians[hop] = statistics.median(hops(m).get(hop, 0.0) for m in done)
    notes = []
    for share in (0.01, 0.05):
        tail = done[-max(1, math.ceil(len(done) * share)) :]
        excess = {
            hop: statistics.mean(hops(m).get(hop, 0.0) for m in tail) - median
            for hop, median in medians.items()
        }
        worst = max(excess, key=lambda h: excess[h])
        total = statistics.mean((m["handoffs_readable"] - m["posted"]) * 1000 for m in tail)
        listed = ", ".join(f"{h} +{v:.0f}" for h, v in sorted(excess.items(), key=lambda x: -x[1]))
        notes.append(
            f"slowest {share:.0%} ({len(tail)} probes, mean {total:.0f} ms): "
            f"dominated by {worst}; excess over each hop's median, ms: {listed}"
        )
    return notes
