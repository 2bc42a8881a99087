"""`leadrouter report weekly` over the demo seed: its figures are GET /v1/goals' and /v1/funnel's.

The three services run with the example playbook (its goals included); `leadrouter demo seed`
sends a generated history and sales feedback through them; the report is then written by
the command line, as of a fixed time, and read back: every goal's actual, target and status,
and the funnel this week and last, must be what the API answers for the same time.
"""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.backtest.demo import _seed
from services.handoff.goals import period_of
from shared.settings import REPO_ROOT

pytestmark = pytest.mark.integration

STAGES = ["leads", "mqls", "sqls", "opportunities", "customers"]


def table(markdown: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under `## heading` (without header and rule)."""
    section = markdown.split(f"## {heading}\n", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = []
    for line in lines[2:]:
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
        if not section.split(line, 1)[1].startswith("\n|"):
            break
    return rows


def shown(goal: dict[str, Any], value: float | None) -> str:
    if value is None:
        return "–"
    if goal["metric"] in ("pipeline", "revenue"):
        return f"{value:,.2f}"
    if goal["metric"] in ("mqls", "sqls"):
        return f"{value:g}"
    return f"{value * 100:.1f}%"


async def test_the_weekly_report_from_the_demo_seed_matches_the_api(services, tmp_path):
    scoring, handoff, ingest = services["scoring"], services["handoff"], services["ingest"]
    await asyncio.gather(scoring.start(), handoff.start(), ingest.start())
    assert await _seed(60, 10, 7, ingest.url, handoff.url, None) == 0
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    out = tmp_path / "report"
    written = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "services.cli",
            "report",
            "weekly",
            "--out",
            str(out),
            "--at",
            at.isoformat(),
        ],
        env=handoff.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    markdown = (out / "weekly-report.md").read_text()
    html = (out / "weekly-report.html").read_text()
    for chart in ("goals", "funnel"):
        assert (out / "charts" / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    week = period_of("week", at).start
    async with httpx.AsyncClient(base_url=handoff.url) as client:
        goals = (await client.get("/v1/goals", params={"at": at.isoformat()})).json()
        funnel = (
            await client.get(
                "/v1/funnel", params={"since": week.isoformat(), "until": at.isoformat()}
            )
        ).json()
        last = (
            await client.get(
                "/v1/funnel",
                params={"since": (week - timedelta(days=7)).isoformat(), "until": week.isoformat()},
            )
        ).json()
        window = {"since": week.isoformat(), "until": at.isoformat()}
        by_campaign = (
            await client.get(
                "/v1/funnel",
                params={**window, "group_by": "campaign", "attribution": "first_touch"},
            )
        ).json()["breakdown"]["groups"]
        heard = (await client.get("/v1/insights", params=window)).json()["groups"]

    assert funnel["mqls"] + last["mqls"] > 0 and funnel["handoffs"] > 0, "the seed reached handoff"
    rows = table(markdown, "Goals")
    assert [r[0] for r in rows] == [g["title"] for g in goals["goals"]]
    for row, goal in zip(rows, goals["goals"], strict=True):
        assert row[3:9] == [
            shown(goal, goal[k]) for k in ("actual", "target", "expected", "projection", "gap")
        ] + [goal["status"]], goal["goal_id"]
        assert f'<tr data-goal="{goal["goal_id"]}">' in html
    funnel_rows = {
        r[0]: (int(r[1]), int(r[2])) for r in table(markdown, "Funnel against last week")
    }
    assert funnel_rows == {s: (funnel[s], last[s]) for s in STAGES}
    for figure in ("pipeline", "revenue"):
        sums = [funnel[figure], last[figure]]
        said = [
            ", ".join(f"{c} {float(a):,.2f}" for c, a in sorted(x.items())) or "none" for x in sums
        ]
        assert f"{figure.capitalize()}: {said[0]} this week, {said[1]} last week." in markdown
    sla = {r[1]: r[2] for r in table(markdown, "SLA attainment both ways")}
    ratio = funnel["sla"]["ratio"]
    assert sla["Accept within the SLA"] == ("–" if ratio is None else f"{ratio * 100:.1f}%")
    assert sla["MQLs delivered"] == str(funnel["mqls"])
    reasons = sorted(funnel["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    listed = markdown.split("## Top reject reasons\n", 1)[1]
    for reason, count in reasons:
        assert f"- {reason}: {count}" in listed
    campaigns = table(markdown, "Campaigns (first touch)")
    assert by_campaign, "the demo seed's leads carry campaigns"
    assert [r[0] for r in campaigns] == [g["key"] or "(none)" for g in by_campaign]
    for row, group in zip(campaigns, by_campaign, strict=True):
        assert row[1:3] == [f"{group['leads']:g}", f"{group['mqls']:g}"], group["key"]
        assert row[4:6] == [f"{group['sqls']:g}", f"{group['customers']:g}"], group["key"]
    said_heard = markdown.split("## What sales heard, by campaign\n", 1)[1]
    for group in heard:
        assert f"- {group['key'] or '(none)'}: {group['insights']:g} insights;" in said_heard
    assert len(html) > 1000
