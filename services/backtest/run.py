"""`leadrouter playbook backtest|calibrate`: read the history, run the cores, write reports."""

import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from services.backtest.campaigns import campaign_breakdown
from services.backtest.compare import calibrate, compare
from services.backtest.fit_floor import calibrate_fit, fit_at_handoff
from services.backtest.goals import goal_attainment
from services.backtest.history import read_history
from services.backtest.report import write_backtest, write_calibration
from services.backtest.simulate import HistoryEvent, judgements, simulate
from shared.playbook import Playbook, load_playbook
from shared.settings import CommonSettings


def backtest(
    history: list[HistoryEvent],
    baseline: Playbook,
    candidate: Playbook,
    since: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Both playbooks over the history; the comparison of what happened from `since` on."""
    judged = {
        k: j for k, j in judgements(history).items() if since is None or j.handed_off_at >= since
    }
    a = simulate(history, baseline)
    b = simulate(history, candidate)
    result = compare(a.since(since), b.since(since), baseline, candidate, judged)
    result["by_campaign"] = {
        "baseline": campaign_breakdown(history, a.since(since), judged),
        "candidate": campaign_breakdown(history, b.since(since), judged),
    }
    end = max((e.at for e in history), default=None)
    if end is not None and candidate.goals:
        result["goals"] = goal_attainment(b.since(since), candidate, judged, end)
    scores = {"baseline": list(a.scores.values()), "candidate": list(b.scores.values())}
    return result, scores


def backtest_main(
    settings: CommonSettings,
    candidate_path: str,
    baseline_path: str | None,
    since: datetime | None,
    until: datetime | None,
    out_dir: str,
) -> int:
    """Entry point of `leadrouter playbook backtest`."""
    candidate = load_playbook(candidate_path)
    baseline = load_playbook(baseline_path or settings.playbook)
    history = asyncio.run(read_history(settings, until))
    started = time.perf_counter()
    result, scores = backtest(history, baseline, candidate, since)
    elapsed = time.perf_counter() - started
    result["window"] = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    result["simulated_events_per_s"] = round(2 * len(history) / elapsed) if elapsed else None
    path = write_backtest(result, Path(out_dir), scores)
    a, b = result["baseline"], result["candidate"]
    print(
        f"baseline: {a['mqls']} MQLs; candidate: {b['mqls']} MQLs; "
        f"only baseline {result['only_baseline']['count']}, "
        f"only candidate {result['only_candidate']['count']}; report: {path}",
        file=sys.stderr,
    )
    return 0


def calibrate_main(
    settings: CommonSettings,
    since: datetime | None,
    accept_goal: float,
    weekly_capacity: int | None,
    out_dir: str,
) -> int:
    """Entry point of `leadrouter playbook calibrate`."""
    history = asyncio.run(read_history(settings))
    judged = {
        k: j for k, j in judgements(history).items() if since is None or j.handed_off_at >= since
    }
    times = [j.handed_off_at for j in judged.values()]
    weeks = max((max(times) - min(times)).days / 7, 1) if times else None
    result = calibrate(
        judged, accept_goal=accept_goal, weeks=weeks, weekly_capacity=weekly_capacity
    )
    current = load_playbook(settings.playbook).taxonomy.qualification.min_fit
    result["fit"] = calibrate_fit(judged, fit_at_handoff(history), accept_goal, current)
    path = write_calibration(result, Path(out_dir))
    s, fit = result["suggestion"], result["fit"]["suggestion"]
    print(
        f"{result['judged_handoffs']} judged handoffs; suggested MQL threshold: "
        f"{s['mql_threshold'] if s else 'none meets the goal'}; suggested min_fit: "
        f"{fit['min_fit'] if fit['min_fit'] is not None else 'none'}; report: {path}",
        file=sys.stderr,
    )
    return 0
