"""Backtests over HTTP for the board: POST queues a job, GET reads its state and report.

A backtest reads the whole history from Kafka and can take a minute, longer than a request
should, so POST queues a job (a row of shared/backtest_jobs.py) and answers 202 with its URL;
GET reads its state and, when done, the report's JSON. The handoff service only queues and
reads: `leadrouter playbook backtest-worker` runs the jobs, in its own process, so every
handoff instance answers for every job, a restart forgets none, and no file is left behind.
"""

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Row

from services.handoff.schemas import problems
from shared import backtest_jobs
from shared.auth import Admin, HandoffsReader
from shared.errors import Invalid, NotFound
from shared.http import ReadSession, WriteSession
from shared.playbook import PlaybookError, parse_playbook
from shared.strict import Instant

router = APIRouter(prefix="/v1/playbook/backtests", tags=["playbook"])


class BacktestRequest(BaseModel):
    """A candidate playbook (YAML text) and the window to report on."""

    candidate: str = Field(description="The candidate playbook, as YAML text")
    since: Instant | None = None
    until: Instant | None = None


class BacktestJob(BaseModel):
    """A backtest's state (`running` until a worker finished it); `report` holds the report's
    JSON once it is done."""

    id: str
    status: Literal["running", "done", "failed"]
    started_at: datetime
    error: str | None = None
    report: dict[str, Any] | None = None


@router.post(
    "",
    status_code=202,
    summary="Start a backtest of a candidate playbook against the current one",
    response_model=BacktestJob,
    responses=problems({422: "The candidate is not a valid playbook"}),
)
async def start_backtest(
    principal: Admin, session: WriteSession, response: Response, body: BacktestRequest
) -> BacktestJob:
    try:
        parse_playbook(body.candidate, "candidate")
    except PlaybookError as exc:
        raise Invalid(str(exc), pointer="/candidate") from exc
    job = await backtest_jobs.submit(session, body.candidate, body.since, body.until)
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return _view(job)


@router.get(
    "/{job_id}",
    summary="A backtest's state, and its report when done",
    response_model=BacktestJob,
    responses=problems({404: "No such job", 422: "Not a job id"}),
)
async def get_backtest(principal: HandoffsReader, session: ReadSession, job_id: str) -> BacktestJob:
    job = await backtest_jobs.get(session, job_id)
    if job is None:
        raise NotFound(f"no backtest {job_id!r}")
    return _view(job)


def _view(job: Row[Any]) -> BacktestJob:
    status = job.status if job.status in (backtest_jobs.DONE, backtest_jobs.FAILED) else "running"
    return BacktestJob(
        id=job.id, status=status, started_at=job.created_at, error=job.error, report=job.report
    )
