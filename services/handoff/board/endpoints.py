"""The board's pages, their live fragments, the live feed and the static assets.

A page is a shell (layout, navigation, key form) that loads its fragment with the
viewer's key; the fragment is server-rendered HTML and is fetched again whenever the live
feed reports a committed change. Actions are the API's own endpoints, called by board.js.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from services.handoff import funnel_repository
from services.handoff import repository as handoff_repository
from services.handoff.attribution import AttributionModel
from services.handoff.board import campaigns as campaign_views
from services.handoff.board import repository, views
from services.handoff.board.access import BoardViewer, LeadViewer
from services.handoff.board.feed import ChangeFeed
from services.handoff.board.scoring_client import ScoringUnavailable, fetch_lead
from services.handoff.breakdown import TOUCH_GROUPS, GroupBy
from services.handoff.endpoints import STAGE_ORDER, funnel_out
from services.handoff.flows.base import MANAGER_WARNING, REVISIT, STALE_RECYCLE, STALE_REMINDER
from services.handoff.funnel import funnel_breakdown
from services.handoff.sales_insights import insights_summary
from shared.errors import NotFound
from shared.http import ReadSession
from shared.playbook import Playbook
from shared.settings import HandoffSettings
from shared.strict import Day

HERE = Path(__file__).parent
STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
KEEPALIVE_S = 15.0
STREAM_LIFETIME_S = 300.0  # pages reconnect (and reload) after this; bounds a stream's life

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["duration"] = views.duration
templates.env.filters["percent"] = views.percent
templates.env.filters["when"] = views.when
templates.env.filters["figure"] = campaign_views.figure
templates.env.filters["money"] = campaign_views.money
router = APIRouter(prefix="/board", include_in_schema=False)


@dataclass
class BoardState:
    """What the board needs from its service: the playbook, the scoring URL, the feed."""

    playbook: Playbook
    scoring_url: str
    feed: ChangeFeed

    @classmethod
    def for_service(cls, settings: HandoffSettings, playbook: Playbook) -> "BoardState":
        return cls(playbook, settings.scoring_url, ChangeFeed(settings.database_url))


def board_of(request: Request) -> BoardState:
    state: BoardState = request.app.state.board
    return state


PAGES = {
    "sla": ("SLA board", "/board/fragments/sla"),
    "reps": ("Reps", "/board/fragments/reps"),
    "funnel": ("Funnel", "/board/fragments/funnel"),
    "campaigns": ("Campaigns", "/board/fragments/campaigns"),
    "playbook": ("Playbook", "/board/fragments/playbook"),
    # goals_page.py serves these two
    "goals": ("Goals", "/board/fragments/goals"),
    "report": ("Weekly meeting", "/board/fragments/report"),
}
FIXED_PAGES = ("sla", "reps", "funnel", "campaigns", "playbook")


def page(request: Request, name: str, title: str, fragment: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "page.html",
        {"current": name, "title": title, "fragment": fragment, "pages": PAGES},
    )


# -- pages --------------------------------------------------------------------------------


def _page_route(name: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def show(request: Request) -> HTMLResponse:
        return page(request, name, *PAGES[name])

    return show


# The pages without their own module: each loads its fragment, which the live feed refreshes.
for _name in FIXED_PAGES:
    router.add_api_route(
        "" if _name == "sla" else f"/{_name}",
        _page_route(_name),
        methods=["GET"],
        response_class=HTMLResponse,
        name=f"{_name}_page",
    )


@router.get("/leads/{lead_id:path}", response_class=HTMLResponse)
async def lead_page(request: Request, lead_id: str) -> HTMLResponse:
    fragment = f"/board/fragments/leads/{quote(lead_id, safe='')}"
    return page(request, "lead", f"Lead {lead_id}", fragment)


# -- fragments ----------------------------------------------------------------------------


@router.get("/fragments/sla", response_class=HTMLResponse)
async def sla_fragment(
    request: Request,
    session: ReadSession,
    viewer: BoardViewer,
    team: str | None = None,
    tier: str | None = None,
    rep_id: str | None = None,
) -> HTMLResponse:
    board = board_of(request)
    team, tier, rep_id = team or None, tier or None, rep_id or None
    rows = await repository.board_handoffs(session, team, tier, rep_id)
    reps = await handoff_repository.list_reps(session)
    now = datetime.now(UTC)
    held = await repository.waiting_on_reject_policy(session, now, team, tier, rep_id)
    # the durable timers hold when each after-handoff clock fires
    due = await repository.pending_timers(
        session,
        (STALE_REMINDER, STALE_RECYCLE, MANAGER_WARNING, REVISIT),
        [h["handoff_id"] for h in (*rows, *held)],
    )
    warning_at = board.playbook.sla.warning_at
    open_rows = [
        {
            **h,
            "clock": views.running_clock(h, now, warning_at),
            "stale": views.stale_clock(
                h,
                due.get((STALE_REMINDER, h["handoff_id"])),
                due.get((STALE_RECYCLE, h["handoff_id"])),
                board.playbook,
            ),
            "actions": views.actions_for(h["status"]),
        }
        for h in rows
        if h["status"] not in views.WAITING
    ]
    queues: dict[str, list[dict[str, Any]]] = {}
    for h in rows:
        if h["status"] in views.WAITING:
            queues.setdefault(h["queue"] or "queue", []).append(
                {
                    **h,
                    "waited_s": (now - h["created_at"]).total_seconds(),
                    # escalated: the manager queue's own clock (sla.manager_queue)
                    "queue_clock": views.manager_queue_clock(
                        h, due.get((MANAGER_WARNING, h["handoff_id"])), board.playbook, now
                    ),
                }
            )
    policy_waits = [
        {**h, "wait": wait}
        for h in held
        if (wait := views.policy_wait(h, due.get((REVISIT, h["handoff_id"])))) is not None
    ]
    return templates.TemplateResponse(
        request,
        "sla.html",
        {
            "now": now,
            "open": open_rows,
            "queues": queues,
            "policy_waits": policy_waits,
            "policy_waits_capped": len(held) >= repository.POLICY_WAITS_SHOWN,
            "filters": {"team": team or "", "tier": tier or "", "rep_id": rep_id or ""},
            "teams": [t.name for t in board.playbook.routing.teams],
            "tiers": [t.name for t in board.playbook.taxonomy.tiers],
            "reps": reps,
            "rep_names": {r.rep_id: r.name for r in reps},
            "authors": (
                []
                if board.playbook.sla.feedback_from == "anyone"
                else views.feedback_authors(board.playbook)
            ),
            "reject_reasons": board.playbook.sla.reject_reasons,
            "conversion_stages": views.conversion_stages(),
            "viewer": viewer,
        },
    )


@router.get("/fragments/reps", response_class=HTMLResponse)
async def reps_fragment(
    request: Request, session: ReadSession, viewer: BoardViewer
) -> HTMLResponse:
    now = datetime.now(UTC)
    reps = views.rep_rows(await handoff_repository.list_reps(session), now)
    return templates.TemplateResponse(
        request, "reps.html", {"now": now, "reps": reps, "viewer": viewer}
    )


@router.get("/fragments/funnel", response_class=HTMLResponse)
async def funnel_fragment(
    request: Request,
    session: ReadSession,
    viewer: BoardViewer,
    since: Day | None = None,
    until: Day | None = None,
) -> HTMLResponse:
    now = datetime.now(UTC)
    start, end = views.period(since, until, now.date())
    # the API's own figures (GET /v1/funnel), so the board and the API never disagree
    raw = await funnel_repository.funnel(session, start, end, now)
    funnel = funnel_out(raw, start, end).model_dump()
    by_tier = {r["tier"]: r for r in await repository.sla_by_tier(session, start, end, now)}
    stage_names = [name for name, _ in STAGE_ORDER]
    sla_rows: list[dict[str, Any]] = []
    for tier in (t.name for t in board_of(request).playbook.taxonomy.tiers):
        row = by_tier.get(tier, {})
        met, breached = int(row.get("met", 0)), int(row.get("breached", 0))
        sla_rows.append(
            {
                "tier": tier,
                "met": met,
                "decided": met + breached,
                "attainment": met / (met + breached) if met + breached else None,
                "accept_median_s": row.get("accept_median_s"),
                "contact_median_s": row.get("contact_median_s"),
            }
        )
    reasons = sorted(funnel["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    return templates.TemplateResponse(
        request,
        "funnel.html",
        {
            "since": start.date(),
            "until": (end - timedelta(days=1)).date(),
            "funnel": funnel,
            "stages": views.bars([(n, funnel[n], str(funnel[n])) for n in stage_names]),
            "conversions": [
                (a, b, funnel["conversion"][f"{a}_to_{b}"])
                for a, b in zip(stage_names, stage_names[1:], strict=False)
            ],
            "sla_rows": sla_rows,
            "sla_bars": views.bars(
                [
                    (r["tier"], r["attainment"] or 0.0, views.percent(r["attainment"]))
                    for r in sla_rows
                ],
                scale_max=1.0,
            ),
            "reasons": views.bars([(k or "none", v, str(v)) for k, v in reasons]),
            "viewer": viewer,
        },
    )


@router.get("/fragments/campaigns", response_class=HTMLResponse)
async def campaigns_fragment(
    request: Request,
    session: ReadSession,
    viewer: BoardViewer,
    since: Day | None = None,
    until: Day | None = None,
    group_by: GroupBy = GroupBy.CAMPAIGN,
    attribution: AttributionModel = AttributionModel.FIRST_TOUCH,
) -> HTMLResponse:
    now = datetime.now(UTC)
    start, end = views.period(since, until, now.date())
    # the API's own figures (GET /v1/funnel?group_by=..., GET /v1/insights)
    groups = await funnel_breakdown(session, start, end, group_by, attribution)
    insight_group = group_by if group_by == GroupBy.ROUTING_RULE else GroupBy.CAMPAIGN
    insights = await insights_summary(session, start, end, insight_group, attribution)
    return templates.TemplateResponse(
        request,
        "campaigns.html",
        {
            "since": start.date(),
            "until": (end - timedelta(days=1)).date(),
            "group_by": group_by.value,
            "attribution": attribution.value,
            "by_touch": group_by in TOUCH_GROUPS,
            "group_choices": [g.value for g in GroupBy],
            "models": [m.value for m in AttributionModel],
            "groups": groups,
            "mql_bars": campaign_views.mql_bars(groups),
            "insight_group": insight_group.value,
            "insights": insights,
            "viewer": viewer,
        },
    )


@router.get("/fragments/playbook", response_class=HTMLResponse)
async def playbook_fragment(request: Request, viewer: BoardViewer) -> HTMLResponse:
    view = views.playbook_view(board_of(request).playbook)
    return templates.TemplateResponse(request, "playbook.html", {"pb": view})


@router.get("/fragments/leads/{lead_id:path}", response_class=HTMLResponse)
async def lead_fragment(
    request: Request, session: ReadSession, viewer: LeadViewer, lead_id: str
) -> HTMLResponse:
    board = board_of(request)
    scoring_problem = None
    try:
        lead = await fetch_lead(board.scoring_url, lead_id, request.headers.get("authorization"))
    except ScoringUnavailable as exc:
        lead, scoring_problem = None, str(exc)
    lead_key = lead["lead_key"] if lead else lead_id
    handoffs = await repository.lead_handoffs(session, lead_key)
    transitions = await repository.lead_transitions(session, lead_key)
    if lead is None and scoring_problem is None and not handoffs and not transitions:
        raise NotFound(f"no lead {lead_id!r}")
    return templates.TemplateResponse(
        request,
        "lead.html",
        {
            "lead_id": lead_id,
            "lead": lead,
            "scoring_problem": scoring_problem,
            "handoffs": handoffs,
            "timeline": views.timeline(lead, handoffs, transitions),
            "viewer": viewer,
        },
    )


# -- live feed and assets ----------------------------------------------------------------


@router.get("/events")
async def live_events(request: Request, viewer: BoardViewer) -> StreamingResponse:
    """Server-sent events: `ready` on connect, then `change` (a table name) per commit."""
    feed = board_of(request).feed

    async def stream() -> AsyncIterator[str]:
        async with feed.subscribe() as changes:
            yield "retry: 1000\nevent: ready\ndata: connected\n\n"
            loop = asyncio.get_running_loop()
            ends = loop.time() + STREAM_LIFETIME_S
            closing = asyncio.create_task(feed.closing.wait())
            try:
                while loop.time() < ends and not await request.is_disconnected():
                    change = asyncio.create_task(changes.get())
                    await asyncio.wait(
                        {change, closing},
                        timeout=KEEPALIVE_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if closing.done():
                        change.cancel()
                        return  # the server is stopping: let it
                    if change.done():
                        yield f"event: change\ndata: {change.result()}\n\n"
                    else:
                        change.cancel()  # an unread change stays in the queue for the next get
                        yield ": keep-alive\n\n"
            finally:
                closing.cancel()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get("/static/{name}")
async def static_asset(name: str) -> FileResponse:
    path = STATIC.get(name)
    if path is None:
        raise NotFound(f"no board asset {name!r}")
    return FileResponse(path, headers={"cache-control": "no-cache"})
