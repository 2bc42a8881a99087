"""Backtest jobs are rows: the worker claims the oldest, stores its report, and takes over a
job whose worker died; finished jobs go after the retention period."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from services.backtest import worker
from shared import backtest_jobs
from shared.db import make_engine, make_sessionmaker
from shared.kafka import ensure_topics
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration
PLAYBOOK = REPO_ROOT / "deploy" / "playbook.example.yaml"
CANDIDATE = PLAYBOOK.read_text().replace("mql_threshold: 50", "mql_threshold: 60")


async def test_the_worker_runs_queued_jobs_in_order_and_stores_their_reports(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    baseline = load_playbook(PLAYBOOK)
    try:
        async with sessions() as session, session.begin():
            first = await backtest_jobs.submit(session, CANDIDATE, None, None)
            second = await backtest_jobs.submit(session, "taxonomy: 3", None, None)
        assert await worker.work_once(settings, baseline, sessions) == first.id
        async with sessions() as session:
            done = await backtest_jobs.get(session, first.id)
            waiting = await backtest_jobs.get(session, second.id)
        assert done is not None and done.status == "done" and done.error is None
        assert done.report["mql_threshold"] == {"baseline": 50, "candidate": 60}
        assert waiting is not None and waiting.status == "queued"

        assert await worker.work_once(settings, baseline, sessions) == second.id
        async with sessions() as session:
            failed = await backtest_jobs.get(session, second.id)
        assert failed is not None and failed.status == "failed" and failed.report is None
        assert "candidate" in (failed.error or "")
        assert await worker.work_once(settings, baseline, sessions) is None
    finally:
        await engine.dispose()


async def test_a_dead_workers_job_is_claimed_again_and_old_jobs_are_pruned(
    settings: Settings,
) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as session, session.begin():
            job = await backtest_jobs.submit(session, CANDIDATE, None, None)
            claimed = await backtest_jobs.claim(session, now, worker.STALE_AFTER)
        assert claimed is not None and claimed.id == job.id and claimed.status == "running"
        async with sessions() as session, session.begin():
            # Another worker does not take a job whose claim is fresh...
            assert await backtest_jobs.claim(session, now, worker.STALE_AFTER) is None
            # ...but does once the claim is older than STALE_AFTER (its worker died).
            later = now + worker.STALE_AFTER + timedelta(seconds=1)
            again = await backtest_jobs.claim(session, later, worker.STALE_AFTER)
            assert again is not None and again.id == job.id
            await backtest_jobs.finish(session, job.id, later, error="stopped")
        async with sessions() as session, session.begin():
            assert await backtest_jobs.prune(session, later) == 0  # finished at `later` exactly
            await session.execute(
                update(backtest_jobs.backtest_jobs).values(finished_at=now - worker.RETENTION)
            )
            assert await backtest_jobs.prune(session, now - timedelta(days=1)) == 1
            assert await backtest_jobs.get(session, job.id) is None
    finally:
        await engine.dispose()
