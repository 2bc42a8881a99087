"""Backtests over HTTP for the board: an async job that runs `leadrouter playbook backtest`.

A backtest reads the whole history from Kafka and can take a minute, longer than a request
should, so POST starts a job and answers 202 with its URL; GET reads its state and, when
done, the report's JSON. The job runs the command in its own process: the service stays
responsive, and the handoff service does not import the scoring core. Jobs live in this
instance's memory (a restart forgets them; the reports stay on disk).
"""

import asyncio
import json
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
from shared.strict import Instant

router = APIRouter(prefix="/v1/playbook/backtests", tags=["playbook"])


class BacktestRequest(BaseModel):
    """A candidate playbook (YAML text) and the window to report on."""

    candidate: str = Field(description="The candidate playbook, as YAML text")
    since: Instant | None = None
    until: Instant | None = None


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
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)


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
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    job = _Job(job_id, datetime.now().astimezone(), folder, process)
    job.waiter = asyncio.create_task(_wait(job))
    _jobs[job_id] = job
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


async def _wait(job: _Job) -> None:
    _, job.stderr = await job.process.communicate()


def _view(job: _Job) -> BacktestJob:
    code = job.process.returncode
    if code is None:
        return BacktestJob(id=job.id, status="running", started_at=job.started_at)
    if code != 0:
        tail = job.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return BacktestJob(
            id=job.id, status="failed", started_at=job.started_at, error="\n".join(tail)
        )
    report = json.loads((job.folder / "report" / "report.json").read_text())
    return BacktestJob(id=job.id, status="done", started_at=job.started_at, report=report)
