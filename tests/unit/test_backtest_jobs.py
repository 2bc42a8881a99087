"""Backtest jobs of the handoff service leave no temporary folder behind."""

import sys
import tempfile
from pathlib import Path

from services.handoff import backtest_jobs

WRITES_A_REPORT = (
    "import pathlib, sys; out = pathlib.Path(sys.argv[1]) / 'report'; out.mkdir(); "
    "(out / 'report.json').write_text('{\"mqls\": 3}')"
)


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="leadrouter-backtest-test-"))


async def test_a_finished_job_keeps_its_report_and_removes_its_folder() -> None:
    folder = _folder()
    job = await backtest_jobs.start_job(
        "done", [sys.executable, "-c", WRITES_A_REPORT, str(folder)], folder
    )
    assert job.waiter is not None
    await job.waiter
    view = backtest_jobs._view(job)
    assert (view.status, view.report) == ("done", {"mqls": 3})
    assert not folder.exists()


async def test_a_failed_job_says_why_and_removes_its_folder() -> None:
    folder = _folder()
    failing = [sys.executable, "-c", "import sys; sys.exit('no history to read')"]
    job = await backtest_jobs.start_job("failed", failing, folder)
    assert job.waiter is not None
    await job.waiter
    view = backtest_jobs._view(job)
    assert view.status == "failed" and "no history to read" in (view.error or "")
    assert not folder.exists()


async def test_stopping_the_service_stops_running_jobs_and_removes_their_folders() -> None:
    folder = _folder()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    job = await backtest_jobs.start_job("running", sleeper, folder)
    assert backtest_jobs._view(job).status == "running"
    await backtest_jobs.stop_jobs()
    assert job.process.returncode is not None
    assert not folder.exists()
    assert "running" not in backtest_jobs._jobs


async def test_only_the_newest_finished_jobs_are_kept() -> None:
    for i in range(backtest_jobs.MAX_FINISHED + 3):
        folder = _folder()
        job = await backtest_jobs.start_job(f"job{i}", [sys.executable, "-c", ""], folder)
        assert job.waiter is not None
        await job.waiter
    assert len(backtest_jobs._jobs) == backtest_jobs.MAX_FINISHED
    assert "job0" not in backtest_jobs._jobs
    await backtest_jobs.stop_jobs()
