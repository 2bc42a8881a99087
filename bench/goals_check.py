"""`python -m bench.goals_check`: how long one goals check takes over a large history.

A fresh database gets `--handoffs` handoffs (and as many MQL funnel events, a fifth of them
converted with an amount) spread over the last 90 days; then the example playbook's goals
are checked `--repeat` times as the periodic job does (every goal evaluated and its status
compared and saved, in one transaction). Prints the median and the slowest check.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid

import asyncpg

from services.handoff.goals_service import GoalsJob
from shared.db import db_now, make_engine, make_sessionmaker
from shared.migrate import upgrade_async
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

# bench.env's helpers, without its process sampling (psutil): only a database is needed here.
POSTGRES_PORT = int(os.environ.get("LEADROUTER_POSTGRES_PORT", "5432"))
ADMIN_DSN = f"postgresql://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/leadrouter"


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


SEED = """
insert into handoffs (handoff_id, lead_key, status, tier, team, score, attributes, explanation,
  routing_reason, skipped, lifecycle_event_id, reassignments, previous_reps, assigned_at,
  accept_by, accepted_at, contact_by, contacted_at, converted_to, accept_breaches)
select 'h' || n, 'email:p' || n || '@bench.example',
  case when n % 5 = 0 then 'converted' when n % 7 = 0 then 'rejected' else 'contacted' end,
  (array['hot', 'warm', 'cold'])[1 + n % 3], (array['sales', 'enterprise'])[1 + n % 2], 80,
  '{}', '[]', 'bench', '[]', 'e' || n, 0, '[]',
  now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute',
  now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute' + interval '5 minutes',
  case when n % 7 = 0 then null
    else now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute'
      + (n % 9) * interval '1 minute' end,
  now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute' + interval '15 minutes',
  case when n % 7 = 0 then null
    else now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute'
      + (n % 20) * interval '1 minute' end,
  case when n % 5 = 0 then 'opportunity' end,
  case when n % 9 > 5 and n % 7 <> 0 then 1 else 0 end
from generate_series(1, $1) as n;
insert into funnel_events (event_id, lead_key, transition, at)
select 'f' || n, 'email:p' || n || '@bench.example', 'became_mql',
  now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute'
from generate_series(1, $1) as n;
insert into handoff_feedback (handoff_id, action, converted_to, amount, currency, team, cause, at)
select 'h' || n, 'convert', 'opportunity', 1000 + n % 5000, 'EUR',
  (array['sales', 'enterprise'])[1 + n % 2], 'bench',
  now() - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute' + interval '1 day'
from generate_series(1, $1) as n where n % 5 = 0;
analyze;
"""


async def run(handoffs: int, repeat: int, name: str) -> dict[str, object]:
    url = f"postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/{name}"
    await upgrade_async(url)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        progress(f"seeding {handoffs} handoffs over 90 days")
        for statement in SEED.split(";\n"):
            if statement.strip():
                args = (handoffs,) if "$1" in statement else ()
                await conn.execute(statement, *args)
    finally:
        await conn.close()
    playbook = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
    job = GoalsJob(playbook, "bench.goals")
    engine = make_engine(url, pool_size=1)
    sessions = make_sessionmaker(engine)
    timings_ms = []
    try:
        for n in range(repeat):
            async with sessions() as session, session.begin():
                now = await db_now(session)
                started = time.perf_counter()
                checked = await job.check(session, now)
                timings_ms.append((time.perf_counter() - started) * 1000)
            progress(f"check {n + 1}/{repeat}: {len(checked)} goals in {timings_ms[-1]:.0f} ms")
    finally:
        await engine.dispose()
    return {
        "handoffs": handoffs,
        "goals": len(playbook.goals),
        "check_median_ms": round(statistics.median(timings_ms), 1),
        "check_max_ms": round(max(timings_ms), 1),
    }


async def main(handoffs: int, repeat: int) -> None:
    name = f"leadrouter_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        print(json.dumps(await run(handoffs, repeat, name)))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.handoffs, args.repeat))
