"""Backtests over HTTP for the board: an async job that runs `leadrouter playbook backtest`.

A backtest reads the whole history from Kafka and can take a minute, longer than a request
should, so POST starts a job and answers 202 with its URL; GET reads its state and, when
done, the report's JSON. The job runs the command in its own process: the service stays
responsive, and the handoff service does not import the scoring core. Jobs live in this
instance's memory (a restart forgets them); a job's temporary folder is removed as soon as it
ends (its report's JSON is kept with the job), the newest MAX_FINISHED finished jobs are
kept, and a stopping service stops its running jobs and removes their folders.
"""

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from services.handoff.schemas import problems
from shared.auth import Admin, HandoffsReader
from shared.errors import Invalid, NotFound
from shared.playbook import PlaybookError, parse_playbook

router = APIRouter(prefix="/v1/playbook/backtests", tags=["playbook"])


class BacktestRequest(BaseModel):
    """A candidate playbook (YAML text) and the window to report on."""

    candidate: str = Field(description="The candidate playbook, as YAML text")
    since: datetime | None = None
    until: datetime | None = None


class BacktestJob(BaseModel):
    """A backtest's state; `report` holds the report's JSON once it is done."""

    id: str
    status: Literal["running", "done", "failed"]
    started_at: datetime
    error: str | None = None
    report: dict[str, Any] | None = None


@dataclass
class _Job:
    id: str
    started_at: datetime
    folder: Path
    process: asyncio.subprocess.Process
    stderr: bytes = b""
    report: dict[str, Any] | None = None
    error: str | None = None
    finished: bool = False
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)


MAX_FINISHED = 20  # finished jobs (and their reports) an instance keeps
_jobs: dict[str, _Job] = {}


@router.post(
    "",
    status_code=202,
    summary="Start a backtest of a candidate playbook against the current one",
    response_model=BacktestJob,
    responses=problems({422: "The candidate is not a valid playbook"}),
)
async def start_backtest(
    principal: Admin, response: Response, body: BacktestRequest
) -> BacktestJob:
    try:
        parse_playbook(body.candidate, "candidate")
    except PlaybookError as exc:
        raise Invalid(str(exc), pointer="/candidate") from exc
    job_id = str(uuid.uuid4())
    folder = Path(tempfile.mkdtemp(prefix=f"leadrouter-backtest-{job_id[:8]}-"))
    candidate = folder / "candidate.yaml"
    candidate.write_text(body.candidate)
    args = [sys.executable, "-m", "services.cli", "playbook", "backtest", str(candidate)]
    args += ["--out", str(folder / "report")]
    if body.since:
        args += ["--since", body.since.isoformat()]
    if body.until:
        args += ["--until", body.until.isoformat()]
    job = await start_job(job_id, args, folder)
    response.headers["Location"] = f"{router.prefix}/{job_id}"
    return _view(job)


@router.get(
    "/{job_id}",
    summary="A backtest's state, and its report when done",
    response_model=BacktestJob,
    responses=problems({404: "No such job on this instance", 422: "Not a job id"}),
)
async def get_backtest(principal: HandoffsReader, job_id: str) -> BacktestJob:
    job = _jobs.get(job_id)
    if job is None:
        raise NotFound(f"no backtest {job_id!r} on this instance")
    return _view(job)


async def start_job(job_id: str, args: list[str], folder: Path) -> _Job:
    """Run `args` as job `job_id`, which writes its report to `folder`/report/report.json."""
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job = _Job(job_id, datetime.now().astimezone(), folder, process)
    job.waiter = asyncio.create_task(_wait(job))
    _jobs[job_id] = job
    return job


async def _wait(job: _Job) -> None:
    """Wait for the job's process, keep its outcome and remove its folder."""
    try:
        _, job.stderr = await job.process.communicate()
        if job.process.returncode == 0:
            job.report = json.loads((job.folder / "report" / "report.json").read_text())
        else:
            tail = job.stderr.decode(errors="replace").strip().splitlines()[-3:]
            job.error = "\n".join(tail) or f"the backtest exited with {job.process.returncode}"
    except (OSError, ValueError) as exc:
        job.error = f"the backtest's report could not be read: {exc}"
    finally:
        job.finished = True
        shutil.rmtree(job.folder, ignore_errors=True)
        _forget_oldest_finished()


def _forget_oldest_finished() -> None:
    finished = sorted((j for j in _jobs.values() if j.finished), key=lambda j: j.started_at)
    for job in finished[: max(0, len(finished) - MAX_FINISHED)]:
        del _jobs[job.id]


async def stop_jobs() -> None:
    """Stop this instance's running backtests and remove their folders (service shutdown)."""
    for job in list(_jobs.values()):
        if job.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                job.process.kill()
        if job.waiter is not None:
            with contextlib.suppress(Exception):
                await job.waiter
        shutil.rmtree(job.folder, ignore_errors=True)
    _jobs.clear()


def _view(job: _Job) -> BacktestJob:
    if not job.finished:
        return BacktestJob(id=job.id, status="running", started_at=job.started_at)
    if job.report is None:
        error = job.error or "the backtest did not finish"
        return BacktestJob(id=job.id, status="failed", started_at=job.started_at, error=error)
    return BacktestJob(id=job.id, status="done", started_at=job.started_at, report=job.report)
