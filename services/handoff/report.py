"""The smarketing meeting's page: goals, the funnel against last week, SLAs both ways, reject
reasons, campaigns and what sales heard.

`leadrouter report weekly` writes it as HTML and Markdown with PNG charts; the board serves
the same page. Every figure comes from the queries behind GET /v1/goals, GET /v1/funnel (with
`group_by=campaign`, first-touch credit) and GET /v1/insights,
so the page, the API and the board never disagree. The week is Monday to Sunday (UTC) and
runs up to `now` when it is the current one; last week is the whole week before.
"""

import asyncio
import base64
import html
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import funnel_repository
from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy
from services.handoff.endpoints import STAGE_ORDER, funnel_out
from services.handoff.funnel import funnel_breakdown
from services.handoff.goals import GoalProgress, gap_stage, period_of
from services.handoff.goals_repository import tally
from services.handoff.goals_service import evaluate_period
from services.handoff.sales_insights import insights_summary
from shared.playbook import Playbook
from shared.playbook.goals import COUNT_METRICS, MONEY_METRICS, Goal, GoalMetric

STAGES = [name for name, _ in STAGE_ORDER]


@dataclass
class WeeklyReport:
    """The meeting's figures; `html_body`, `html` and `markdown` render them."""

    at: datetime
    week: tuple[datetime, datetime]
    last_week: tuple[datetime, datetime]
    goals: list[GoalProgress]
    gap_stage: str | None
    funnel: dict[str, Any]
    last_funnel: dict[str, Any]
    contact_sla: tuple[int, int]  # met, decided
    acceptance: tuple[int, int]  # accepted, decided
    # the week's funnel and sales insights per campaign, first-touch credit
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    insights: list[dict[str, Any]] = field(default_factory=list)
    charts: dict[str, bytes] = field(default_factory=dict)

    # -- figures -------------------------------------------------------------------------

    @property
    def last_day(self) -> str:
        """The week's last day shown (its end is exclusive)."""
        return _day(self.week[1] - timedelta(microseconds=1))

    def reasons(self, top: int = 5) -> list[tuple[str, int]]:
        """The most frequent reject reasons this week."""
        items = self.funnel["rejected_by_reason"].items()
        return sorted(((k or "none", v) for k, v in items), key=lambda kv: (-kv[1], kv[0]))[:top]

    def campaign_rows(self) -> list[list[str]]:
        """Per campaign: leads, MQLs, accept rate, SQLs, customers, pipeline, revenue."""
        return [
            [
                g["key"] or "(none)",
                f"{g['leads']:g}",
                f"{g['mqls']:g}",
                _pct(g["accept_rate"]),
                f"{g['sqls']:g}",
                f"{g['customers']:g}",
                _money(g["pipeline"]),
                _money(g["revenue"]),
            ]
            for g in self.campaigns
        ]

    def insight_lines(self, top: int = 3) -> list[str]:
        """Per campaign: how many insights, the most heard tags of each kind, the latest note."""
        lines = []
        for g in self.insights:
            heard = "; ".join(
                f"{kind}: " + ", ".join(f"{v} ({n:g})" for v, n in list(counts.items())[:top])
                for kind, counts in g["tags"].items()
            )
            note = f'; latest note: "{g["latest_notes"][0]}"' if g["latest_notes"] else ""
            lines.append(f"{g['key'] or '(none)'}: {g['insights']:g} insights; {heard}{note}")
        return lines

    def sla_rows(self) -> list[tuple[str, str, str, str]]:
        """(side, commitment, this week, detail): sales' speed, marketing's volume and quality."""
        f = self.funnel
        met, decided = self.contact_sla
        accepted, judged = self.acceptance
        return [
            (
                "sales",
                "Accept within the SLA",
                _pct(f["sla"]["ratio"]),
                f"{f['sla']['met']} met, {f['sla']['breached']} breached",
            ),
            (
                "sales",
                "First contact within the SLA",
                _pct(met / decided if decided else None),
                f"{met} of {decided}",
            ),
            (
                "marketing",
                "MQLs delivered",
                str(f["mqls"]),
                f"last week {self.last_funnel['mqls']}",
            ),
            (
                "marketing",
                "MQLs sales accepts",
                _pct(accepted / judged if judged else None),
                f"{accepted} of {judged} decided",
            ),
        ]

    # -- rendering ------------------------------------------------------------------------

    def markdown(self) -> str:
        """The page as Markdown (charts as relative PNG links)."""
        out = [
            f"# Smarketing weekly: {_day(self.week[0])} to {self.last_day}",
            "",
        ]
        out += [f"As of {self.at.isoformat(timespec='minutes')}.", "", "## Goals", ""]
        out.append(_gap_sentence(self.gap_stage))
        out += [
            "",
            "| Goal | Owner | Period | Actual | Target | Expected | Projection | Gap | Status |",
        ]
        out.append("|---|---|---|---|---|---|---|---|---|")
        for g in self.goals:
            out.append(
                f"| {g.title} | {g.owner} | {g.period} | {_fig(g, g.actual)} | "
                f"{_fig(g, g.target)} | {_fig(g, g.expected)} | {_fig(g, g.projection)} | "
                f"{_fig(g, g.gap)} | {g.status} |"
            )
        out += ["", "![Goals](charts/goals.png)", "", "## Funnel against last week", ""]
        out += ["| Stage | This week | Last week | Change |", "|---|---|---|---|"]
        for stage, now, before, change in self.funnel_rows():
            out.append(f"| {stage} | {now} | {before} | {change} |")
        out += [""] + [f"{line}." for line in self.money_lines()]
        out += ["", "![Funnel](charts/funnel.png)", "", "## SLA attainment both ways", ""]
        out += ["| Side | Commitment | This week | Detail |", "|---|---|---|---|"]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.sla_rows()]
        out += ["", "## Top reject reasons", ""]
        reasons = self.reasons()
        out += [f"- {r}: {n}" for r, n in reasons] or ["No rejections this week."]
        out += ["", "## Campaigns (first touch)", ""]
        out += [
            "| Campaign | Leads | MQLs | Accept rate | SQLs | Customers | Pipeline | Revenue |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += ["| " + " | ".join(row) + " |" for row in self.campaign_rows()]
        out += ["", "## What sales heard, by campaign", ""]
        out += [f"- {line}" for line in self.insight_lines()] or ["No insights this week."]
        return "\n".join(out) + "\n"

    def money_lines(self) -> list[str]:
        """Pipeline and revenue this week and last, per currency (the funnel's sums)."""
        lines = []
        for figure in ("pipeline", "revenue"):
            now, before = self.funnel[figure], self.last_funnel[figure]
            lines.append(
                f"{figure.capitalize()}: {_money(now)} this week, {_money(before)} last week"
            )
        return lines

    def funnel_rows(self) -> list[tuple[str, int, int, str]]:
        """(stage, this week, last week, change) for each funnel stage."""
        rows = []
        for stage in STAGES:
            now, before = int(self.funnel[stage]), int(self.last_funnel[stage])
            change = f"{(now - before) / before:+.0%}" if before else "–"
            rows.append((stage, now, before, change))
        return rows

    def html_body(self, charts: Literal["files", "inline"] = "files") -> str:
        """The page's content as HTML: charts linked as files or inlined (the board)."""

        def img(name: str, alt: str) -> str:
            if charts == "inline" and name in self.charts:
                data = base64.b64encode(self.charts[name]).decode()
                return f'<img alt="{alt}" src="data:image/png;base64,{data}">'
            return f'<img alt="{alt}" src="charts/{name}.png">'

        e = html.escape
        parts = [
            '<div class="report">',
            f"<p>Week {_day(self.week[0])} to {self.last_day}, as of "
            f"{e(self.at.isoformat(timespec='minutes'))}.</p>",
            "<h2>Goals</h2>",
            f'<p id="report-gap">{e(_gap_sentence(self.gap_stage))}</p>',
            '<table id="report-goals"><thead><tr><th>Goal</th><th>Owner</th><th>Period</th>'
            "<th>Actual</th><th>Target</th><th>Expected</th><th>Projection</th><th>Gap</th>"
            "<th>Status</th></tr></thead><tbody>",
        ]
        for g in self.goals:
            cells = [g.title, g.owner, g.period]
            cells += [_fig(g, v) for v in (g.actual, g.target, g.expected, g.projection, g.gap)]
            parts.append(
                f'<tr data-goal="{e(g.goal_id)}">'
                + "".join(f"<td>{e(c)}</td>" for c in cells)
                + f'<td data-status="{g.status}">{g.status}</td></tr>'
            )
        parts += ["</tbody></table>", img("goals", "Goal progress")]
        parts += [
            "<h2>Funnel against last week</h2>",
            '<table id="report-funnel"><thead><tr><th>Stage</th><th>This week</th>'
            "<th>Last week</th><th>Change</th></tr></thead><tbody>",
        ]
        for stage, now, before, change in self.funnel_rows():
            parts.append(
                f'<tr data-stage="{stage}"><th>{stage}</th><td class="this">{now}</td>'
                f'<td class="last">{before}</td><td>{change}</td></tr>'
            )
        parts.append("</tbody></table>")
        parts += [f'<p class="money">{e(line)}.</p>' for line in self.money_lines()]
        parts.append(img("funnel", "Funnel this week and last week"))
        parts += [
            "<h2>SLA attainment both ways</h2>",
            '<table id="report-sla"><thead><tr><th>Side</th><th>Commitment</th>'
            "<th>This week</th><th>Detail</th></tr></thead><tbody>",
        ]
        for row in self.sla_rows():
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts += ["</tbody></table>", "<h2>Top reject reasons</h2>"]
        reasons = self.reasons()
        if reasons:
            parts.append('<ul id="report-reasons">')
            parts += [f"<li>{e(r)}: {n}</li>" for r, n in reasons]
            parts.append("</ul>")
        else:
            parts.append('<p class="empty">No rejections this week.</p>')
        parts += [
            "<h2>Campaigns (first touch)</h2>",
            '<table id="report-campaigns"><thead><tr><th>Campaign</th><th>Leads</th>'
            "<th>MQLs</th><th>Accept rate</th><th>SQLs</th><th>Customers</th><th>Pipeline</th>"
            "<th>Revenue</th></tr></thead><tbody>",
        ]
        for cells in self.campaign_rows():
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        parts += ["</tbody></table>", "<h2>What sales heard, by campaign</h2>"]
        heard = self.insight_lines()
        if heard:
            parts.append('<ul id="report-insights">')
            parts += [f"<li>{e(line)}</li>" for line in heard]
            parts.append("</ul>")
        else:
            parts.append('<p class="empty">No insights this week.</p>')
        parts.append("</div>")
        return "\n".join(parts)

    def html(self) -> str:
        """A standalone HTML page (charts as files beside it)."""
        title = f"Smarketing weekly {_day(self.week[0])}"
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}'
            "</title><style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;"
            "padding:1rem}table{border-collapse:collapse}td,th{border-bottom:1px solid #ccc;"
            f"padding:.3rem .6rem;text-align:left}}</style></head><body><h1>{title}</h1>\n"
            f"{self.html_body()}\n</body></html>\n"
        )

    def write(self, folder: Path) -> Path:
        """Write weekly-report.html, weekly-report.md and charts/*.png; returns the HTML."""
        (folder / "charts").mkdir(parents=True, exist_ok=True)
        for name, png in self.charts.items():
            (folder / "charts" / f"{name}.png").write_bytes(png)
        (folder / "weekly-report.md").write_text(self.markdown())
        page = folder / "weekly-report.html"
        page.write_text(self.html())
        return page


def _day(at: datetime) -> str:
    return at.date().isoformat()


def _money(sums: dict[str, Any]) -> str:
    if not sums:
        return "none"
    return ", ".join(
        f"{currency} {float(amount):,.2f}" for currency, amount in sorted(sums.items())
    )


def _pct(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.1f}%"


def _fig(g: GoalProgress, value: float | None) -> str:
    if value is None:
        return "–"
    if GoalMetric(g.metric) in MONEY_METRICS:
        return f"{value:,.2f}"
    if GoalMetric(g.metric) in COUNT_METRICS:
        return f"{value:g}"
    return _pct(value)


def _gap_sentence(stage: str | None) -> str:
    if stage is None:
        return "No goal is behind what it implies by now."
    return f"The gap sits at the {stage} stage (the largest shortfall against the goals)."


async def weekly_report(
    session: AsyncSession, playbook: Playbook, now: datetime, week_of: datetime | None = None
) -> WeeklyReport:
    """The meeting's figures for the week holding `week_of` (default: this week, to `now`),
    as they stood at the week's end or at `now`, whichever is first."""
    week = period_of("week", week_of or now)
    start, end = week.start, min(week.end, now)
    last_start = start - timedelta(days=7)
    # as GET /v1/funnel counts them: a deadline passed by `now` is decided
    funnel = funnel_out(await funnel_repository.funnel(session, start, end, now), start, end)
    last_raw = await funnel_repository.funnel(session, last_start, start, now)
    last = funnel_out(last_raw, last_start, start)
    # the week's contact SLA and acceptance, counted as the goals count them
    contact = await tally(session, _probe(GoalMetric.CONTACT_SLA), week, end)
    acceptance = await tally(session, _probe(GoalMetric.MQL_ACCEPTANCE_RATE), week, end)
    # as they stood at the week's end (or now): a week that is over shows met or missed
    goals = await evaluate_period(
        session, list(playbook.goals), end, end - timedelta(microseconds=1)
    )
    report = WeeklyReport(
        at=now,
        week=(start, end),
        last_week=(last_start, start),
        goals=goals,
        gap_stage=gap_stage(goals),
        funnel=funnel.model_dump(),
        last_funnel=last.model_dump(),
        contact_sla=(int(contact.value), int(contact.out_of or 0)),
        acceptance=(int(acceptance.value), int(acceptance.out_of or 0)),
        campaigns=await funnel_breakdown(
            session, start, end, GroupBy.CAMPAIGN, AttributionModel.FIRST_TOUCH
        ),
        insights=await insights_summary(
            session, start, end, GroupBy.CAMPAIGN, AttributionModel.FIRST_TOUCH
        ),
    )
    report.charts = await asyncio.to_thread(charts, report)  # CPU-bound: off the event loop
    return report


def _probe(metric: GoalMetric) -> Goal:
    return Goal(id="report", metric=metric, target=1, period="week")


def charts(report: WeeklyReport) -> dict[str, bytes]:
    """PNG charts: goal progress (share of target, expected marked) and the funnel by week."""
    # Figures without pyplot: no global state, so the board may draw them off the event loop.
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}
    fig = Figure(figsize=(7, 0.5 + 0.45 * max(len(report.goals), 1)))
    ax = fig.subplots()
    labels = [g.title for g in report.goals]
    done = [min((g.actual or 0) / g.target, 1.5) for g in report.goals]
    expected = [min(g.expected / g.target, 1.5) for g in report.goals]
    ax.barh(labels, done, color="#1f5fa8", label="actual / target")
    ax.scatter(expected, labels, marker="|", s=400, color="#222", label="expected by now")
    ax.axvline(1.0, color="#999", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.5)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    out["goals"] = _png(fig)
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    xs = range(len(STAGES))
    ax.bar(
        [x - 0.2 for x in xs],
        [report.last_funnel[s] for s in STAGES],
        0.4,
        label="last week",
        color="#9bb7d8",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [report.funnel[s] for s in STAGES],
        0.4,
        label="this week",
        color="#1f5fa8",
    )
    ax.set_xticks(list(xs), STAGES)
    ax.legend(fontsize=8)
    out["funnel"] = _png(fig)
    return out


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding `at`."""
    return period_of("week", at.astimezone(UTC)).start


def report_main(
    settings: Any, out: str, week_of: datetime | None = None, at: datetime | None = None
) -> int:
    """`leadrouter report weekly`: write the meeting page for a week; prints where it is."""
    from shared.db import db_now, make_engine, make_sessionmaker
    from shared.playbook import load_playbook

    playbook = load_playbook(settings.playbook)

    async def build() -> WeeklyReport:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session:
                now = min(at, await db_now(session)) if at else await db_now(session)
                return await weekly_report(session, playbook, now, week_of)
        finally:
            await engine.dispose()

    report = asyncio.run(build())
    page = report.write(Path(out))
    print(f"wrote {page} and {Path(out) / 'weekly-report.md'} ({len(report.charts)} charts)")
    return 0
