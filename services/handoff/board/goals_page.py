"""The board's Goals page: both teams' commitments side by side, with where the gap sits.

Its figures are GET /v1/goals' own (the same core and queries), so the page and the API
never disagree. The weekly meeting page (`leadrouter report weekly`) is served here too.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.handoff.board.access import BoardViewer
from services.handoff.board.endpoints import board_of, page, router, templates
from services.handoff.goals import GoalProgress, gap_stage
from services.handoff.goals_service import evaluate
from services.handoff.report import weekly_report
from shared.http import ReadSession
from shared.playbook.goals import COUNT_METRICS, GoalMetric

SIDES = (("marketing", "Marketing commits"), ("sales", "Sales commits"), ("both", "Shared goals"))
STATUS_TEXT = {
    "on_track": "On track",
    "at_risk": "At risk",
    "off_track": "Off track",
    "met": "Met",
    "missed": "Missed",
}


@dataclass(frozen=True)
class GoalCard:
    """A goal as the page shows it: figures as text, bar widths in percent of the target."""

    progress: GoalProgress
    actual: str
    target: str
    expected: str
    projection: str
    gap: str
    status_text: str
    done_pct: float
    expected_pct: float


def figure(metric: str, value: float | None, signed: bool = False) -> str:
    """A goal figure as text: a rate as a percentage, a count or an amount as a number."""
    if value is None:
        return "–"
    sign = "+" if signed and value > 0 else ""
    if GoalMetric(metric) in COUNT_METRICS:
        return f"{sign}{value:,.2f}".rstrip("0").rstrip(".")
    return f"{sign}{value * 100:.1f}%"


def card(p: GoalProgress) -> GoalCard:
    """The page's view of one goal's progress."""

    def pct(value: float | None) -> float:
        return round(min(100.0, 100 * (value or 0) / p.target), 1)

    return GoalCard(
        progress=p,
        actual=figure(p.metric, p.actual),
        target=figure(p.metric, p.target),
        expected=figure(p.metric, p.expected),
        projection=figure(p.metric, p.projection),
        gap=figure(p.metric, p.gap, signed=True),
        status_text=STATUS_TEXT[str(p.status)],
        done_pct=pct(p.actual),
        expected_pct=pct(p.expected),
    )


def columns(progresses: list[GoalProgress]) -> list[tuple[str, str, list[GoalCard]]]:
    """The goals grouped by owner, marketing's and sales' side by side, then the shared ones."""
    return [
        (side, title, [card(p) for p in progresses if p.owner == side]) for side, title in SIDES
    ]


@router.get("/goals", response_class=HTMLResponse, name="goals_page")
async def goals_page(request: Request) -> HTMLResponse:
    return page(request, "goals", "Goals", "/board/fragments/goals")


@router.get("/fragments/goals", response_class=HTMLResponse)
async def goals_fragment(
    request: Request, session: ReadSession, viewer: BoardViewer
) -> HTMLResponse:
    now = datetime.now(UTC)
    progresses = await evaluate(session, list(board_of(request).playbook.goals), now)
    return templates.TemplateResponse(
        request,
        "goals.html",
        {
            "now": now,
            "columns": columns(progresses),
            "gap_stage": gap_stage(progresses),
            "worst": max(progresses, key=lambda p: p.shortfall, default=None),
            "viewer": viewer,
        },
    )


@router.get("/report", response_class=HTMLResponse, name="report_page")
async def report_page(request: Request) -> HTMLResponse:
    return page(request, "report", "Weekly meeting", "/board/fragments/report")


@router.get("/fragments/report", response_class=HTMLResponse)
async def report_fragment(
    request: Request, session: ReadSession, viewer: BoardViewer
) -> HTMLResponse:
    report = await weekly_report(session, board_of(request).playbook, datetime.now(UTC))
    return HTMLResponse(report.html_body(charts="inline"))
