"""What an idle consumer costs: CPU of idle scoring and handoff processes with the consumers'
fetch_max_wait_ms at 20 (shared/consumer.py's FETCH_MAX_WAIT_MS) and at 500 (aiokafka's
default), alternately, 30 s each after 10 s to settle.

    python -m bench.idle_cpu
"""

import asyncio
import os
import subprocess
import sys

import psutil

from bench.env import LOG_DIR, drop_databases, fresh_settings
from harness.processes import Service
from shared.kafka import ensure_topics


async def main() -> None:
    s = await fresh_settings()
    await ensure_topics(s)
    for wait in (20, 500, 20, 500):
        svcs = [Service(n, s, LOG_DIR, f"idle-{n}-{wait}") for n in ("scoring", "handoff")]
        for svc in svcs:
            svc.env.pop("LEADROUTER_CONSUMER_POLL_TIMEOUT_MS", None)
            svc.env.pop("LEADROUTER_OUTBOX_IDLE_POLL_S", None)
        # the same process as `leadrouter <name>`, with the module constant set first
        for svc in svcs:
            svc.log_path.parent.mkdir(parents=True, exist_ok=True)
            code = (
                f"import shared.consumer as c; c.FETCH_MAX_WAIT_MS = {wait}; "
                "from services.cli import main; "
                f"raise SystemExit(main(['{svc.name}', '--port', '{svc.port}']))"
            )
            svc.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-c", code],
                env=svc.env,
                stdout=svc.log_path.open("ab"),
                stderr=subprocess.STDOUT,
            )
            svc._pid = svc.process.pid
        for svc in svcs:
            await svc.wait_ready()
        await asyncio.sleep(10)
        procs = [psutil.Process(svc.pid) for svc in svcs]
        before = [sum(p.cpu_times()[:2]) for p in procs]
        la = os.getloadavg()[0]
        await asyncio.sleep(30)
        after = [sum(p.cpu_times()[:2]) for p in procs]
        print(
            f"fetch_max_wait_ms={wait}: "
            + ", ".join(
                f"{svc.name} {(a - b) / 30 * 100:.1f}% of a core"
                for svc, a, b in zip(svcs, after, before, strict=True)
            )
            + f" (load {la:.1f})",
            flush=True,
        )
        for svc in svcs:
            svc.stop()
        await asyncio.sleep(2)
    await drop_databases()


if __name__ == "__main__":
    asyncio.run(main())
