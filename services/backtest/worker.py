"""`leadrouter playbook backtest-worker`: run the backtests queued over HTTP.

The handoff service queues jobs (`POST /v1/playbook/backtests`, shared/backtest_jobs.py);
this worker claims the oldest, reads the history from Kafka, runs the candidate and the
current playbook (LEADROUTER_PLAYBOOK) through the cores as `leadrouter playbook backtest`
does, and stores the report's JSON in the job's row. One job at a time; run more workers for
more at once. It also deletes jobs finished more than RETENTION ago.
"""

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.backtest.history import read_history
from services.backtest.run import backtest
from shared import backtest_jobs
from shared.db import db_now, make_engine, make_sessionmaker
from shared.migrate import upgrade_async
from shared.playbook import Playbook, PlaybookError, load_playbook, parse_playbook
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often an idle worker looks for a job
STALE_AFTER = timedelta(minutes=30)  # a claim this old is a dead worker's: run the job again
RETENTION = timedelta(days=7)  # finished jobs are kept this long


async def run_job(settings: CommonSettings, baseline: Playbook, job: Row[Any]) -> dict[str, Any]:
    """The backtest report (JSON-ready) of one job."""
    candidate = parse_playbook(job.candidate, "candidate")
    history = await read_history(settings, job.until)
    result, _ = await asyncio.to_thread(backtest, history, baseline, candidate, job.since)
    result["window"] = {
        "since": job.since.isoformat() if job.since else None,
        "until": job.until.isoformat() if job.until else None,
    }
    report: dict[str, Any] = json.loads(json.dumps(result, default=str))
    return report


async def work_once(
    settings: CommonSettings, baseline: Playbook, sessions: async_sessionmaker[AsyncSession]
) -> str | None:
    """Claim and run one job; its id, None when none was waiting."""
    async with sessions() as session, session.begin():
        now = await db_now(session)
        await backtest_jobs.prune(session, now - RETENTION)
        job = await backtest_jobs.claim(session, now, STALE_AFTER)
    if job is None:
        return None
    log.info("backtest %s: running", job.id)
    report: dict[str, Any] | None = None
    error: str | None = None
    try:
        report = await run_job(settings, baseline, job)
    except (PlaybookError, ValueError, OSError) as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # a report, not a crash loop: the job says what went wrong
        log.exception("backtest %s failed", job.id)
        error = f"{type(exc).__name__}: {exc}"
    async with sessions() as session, session.begin():
        await backtest_jobs.finish(
            session, job.id, await db_now(session), report=report, error=error
        )
    log.info("backtest %s: %s", job.id, "done" if error is None else f"failed: {error}")
    return str(job.id)


async def work(settings: CommonSettings, once: bool = False) -> None:
    """Run queued jobs until cancelled (with `once`: until none is waiting)."""
    baseline = load_playbook(settings.playbook)
    await upgrade_async(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        sessions = make_sessionmaker(engine)
        while True:
            if await work_once(settings, baseline, sessions) is None:
                if once:
                    return
                await asyncio.sleep(POLL_S)
    finally:
        await engine.dispose()


def main(settings: CommonSettings, once: bool) -> int:
    """Entry point of `leadrouter playbook backtest-worker`."""
    try:
        asyncio.run(work(settings, once))
    except KeyboardInterrupt:
        pass
    return 0
