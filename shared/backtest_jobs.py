"""The queue of playbook backtests: rows that the handoff service's HTTP door adds and reads,
and that `leadrouter playbook backtest-worker` claims, runs and finishes.

A job is a row from the moment it is asked for, so any instance answers for it and a restart
forgets nothing; the report's JSON is stored in the row, so no file is left behind. Workers
claim with SKIP LOCKED and commit the claim before the long run; a job whose worker died is
claimed again once its claim is older than `stale_after`. Finished jobs are deleted after a
retention period. SQL only: the runner is services/backtest/worker.py.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import metadata

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

backtest_jobs = Table(
    "backtest_jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("candidate", Text, nullable=False),  # the candidate playbook's YAML
    Column("since", DateTime(timezone=True)),
    Column("until", DateTime(timezone=True)),
    Column("status", Text, nullable=False),  # queued, running, done, failed
    Column("error", Text),
    Column("report", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("claimed_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)
Index(
    "backtest_jobs_waiting",
    backtest_jobs.c.created_at,
    postgresql_where=text("status IN ('queued', 'running')"),
)


async def submit(
    session: AsyncSession, candidate: str, since: datetime | None, until: datetime | None
) -> Row[Any]:
    """Queue a backtest of `candidate` (YAML); the new row."""
    row = (
        await session.execute(
            backtest_jobs.insert()
            .values(
                id=str(uuid.uuid4()), candidate=candidate, since=since, until=until, status=QUEUED
            )
            .returning(backtest_jobs)
        )
    ).one()
    return row


async def get(session: AsyncSession, job_id: str) -> Row[Any] | None:
    """The job with this id, None if there is none."""
    return (
        await session.execute(select(backtest_jobs).where(backtest_jobs.c.id == job_id))
    ).first()


async def claim(session: AsyncSession, now: datetime, stale_after: timedelta) -> Row[Any] | None:
    """The oldest waiting job (or one whose worker's claim went stale), now running."""
    waiting = or_(
        backtest_jobs.c.status == QUEUED,
        and_(backtest_jobs.c.status == RUNNING, backtest_jobs.c.claimed_at < now - stale_after),
    )
    job_id = (
        await session.execute(
            select(backtest_jobs.c.id)
            .where(waiting)
            .order_by(backtest_jobs.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).scalar()
    if job_id is None:
        return None
    return (
        await session.execute(
            update(backtest_jobs)
            .where(backtest_jobs.c.id == job_id)
            .values(status=RUNNING, claimed_at=now)
            .returning(backtest_jobs)
        )
    ).one()


async def finish(
    session: AsyncSession,
    job_id: str,
    now: datetime,
    *,
    report: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record a job's report (done) or its error (failed)."""
    await session.execute(
        update(backtest_jobs)
        .where(backtest_jobs.c.id == job_id)
        .values(
            status=DONE if error is None else FAILED, report=report, error=error, finished_at=now
        )
    )


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete the jobs that finished before `before`; how many."""
    result = await session.execute(
        delete(backtest_jobs).where(
            backtest_jobs.c.status.in_([DONE, FAILED]), backtest_jobs.c.finished_at < before
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
