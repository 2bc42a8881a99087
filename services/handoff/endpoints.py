"""Handoff's HTTP API: handoffs, sales feedback, reps and the funnel."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from services.handoff import funnel_repository, repository
from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy
from services.handoff.funnel import funnel_breakdown
from services.handoff.money import sums_by_currency
from services.handoff.sales_insights import insights_summary
from services.handoff.schemas import (
    AvailabilityBody,
    AvailabilityOut,
    FeedbackBody,
    FunnelBreakdown,
    FunnelOut,
    HandoffOut,
    InsightsOut,
    RepOut,
    SlaAttainment,
    Timing,
    problems,
)
from services.handoff.service import HandoffService
from services.handoff.status import FeedbackAction, Handoff, HandoffStatus, sla_seconds_left
from shared import audit
from shared.auth import FeedbackWriter, HandoffsReader, RepsWriter
from shared.db import db_now
from shared.errors import Invalid, NotFound
from shared.events import FeedbackData
from shared.http import ReadSession, WriteSession
from shared.playbook import Playbook
from shared.strict import Instant

router = APIRouter()

INVALID = "A parameter or field is not valid (the problem's errors name it)"


def _playbook(request: Request) -> Playbook:
    playbook: Playbook = request.app.state.playbook
    return playbook


def _service(request: Request) -> HandoffService:
    service: HandoffService = request.app.state.handoff_service
    return service


@router.get(
    "/v1/handoffs",
    tags=["handoffs"],
    summary="Handoffs, newest first, with time left",
    response_model=list[HandoffOut],
    responses=problems({422: "Unknown status, team or tier, or a limit out of range"}),
)
async def list_handoffs(
    principal: HandoffsReader,
    request: Request,
    session: ReadSession,
    status: HandoffStatus | None = None,
    rep_id: str | None = None,
    team: str | None = None,
    tier: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[HandoffOut]:
    playbook = _playbook(request)
    tiers = [t.name for t in playbook.taxonomy.tiers]
    if tier is not None and tier not in tiers:
        raise Invalid(f"tier must be one of {tiers}", pointer="/query/tier")
    teams = [t.name for t in playbook.routing.teams]
    if team is not None and team not in teams:
        raise Invalid(f"team must be one of {teams}", pointer="/query/team")
    rows = await repository.list_handoffs(session, status, rep_id, team, tier, limit)
    now = await db_now(session)
    return [handoff_out(h, now) for h in rows]


@router.get(
    "/v1/handoffs/{handoff_id}",
    tags=["handoffs"],
    summary="One handoff",
    response_model=HandoffOut,
    responses=problems({404: "No handoff has this id", 422: INVALID}),
)
async def get_handoff(
    principal: HandoffsReader, session: ReadSession, handoff_id: str
) -> HandoffOut:
    handoff = await repository.get_handoff(session, handoff_id)
    if handoff is None:
        raise NotFound(f"no handoff {handoff_id!r}")
    return handoff_out(handoff, await db_now(session))


@router.post(
    "/v1/handoffs/{handoff_id}/{action}",
    tags=["feedback"],
    summary="Sales feedback: accept, contact, reject (with a reason code) or convert",
    response_model=HandoffOut,
    responses=problems(
        {
            403: "rep_id is neither the handoff's rep nor a manager of its team",
            404: "No handoff has this id",
            409: "Not possible in the handoff's current status (or conversion backwards)",
            422: "Unknown action, reason code, conversion stage or rep",
        }
    ),
)
async def give_feedback(
    principal: FeedbackWriter,
    request: Request,
    session: WriteSession,
    handoff_id: str,
    action: FeedbackAction,
    body: FeedbackBody | None = None,
) -> HandoffOut:
    body = body or FeedbackBody()
    data = FeedbackData(
        handoff_id=handoff_id,
        rep_id=body.rep_id,
        reason=body.reason,
        converted_to=body.converted_to,
        amount=body.amount,
        currency=body.currency,
        tags=body.tags,
        note=body.note,
    )
    now = await db_now(session)
    updated = await _service(request).apply_feedback(
        session,
        action,
        data,
        now,
        cause=f"http:{now.isoformat()}",
        api_key_name=principal.name,
    )
    await audit.record(
        session,
        principal.name,
        f"feedback.{action}",
        handoff_id,
        {"rep_id": data.rep_id, "reason": data.reason}
        | ({"amount": str(data.amount), "currency": data.currency} if data.amount else {}),
    )
    return handoff_out(updated, now)


@router.get(
    "/v1/reps",
    tags=["reps"],
    summary="Reps with their open handoffs and availability",
    response_model=list[RepOut],
)
async def list_reps(principal: HandoffsReader, session: ReadSession) -> list[RepOut]:
    return [RepOut.of(r) for r in await repository.list_reps(session)]


@router.put(
    "/v1/reps/{rep_id}/availability",
    tags=["reps"],
    summary="Mark a rep in or out of office",
    response_model=AvailabilityOut,
    responses=problems({404: "No rep has this id", 422: INVALID}),
)
async def set_availability(
    principal: RepsWriter,
    request: Request,
    session: WriteSession,
    rep_id: str,
    body: AvailabilityBody,
) -> AvailabilityOut:
    now = await db_now(session)
    ledger, drained = await _service(request).set_availability(session, rep_id, body.available, now)
    await audit.record(
        session, principal.name, "rep.availability", rep_id, {"available": body.available}
    )
    return AvailabilityOut(
        rep_id=rep_id,
        available=body.available,
        assigned_total=ledger,
        assigned_from_queue=drained,
    )


def zoned(name: str, value: datetime | None) -> datetime | None:
    """A query's time, refused without a zone (a zoneless time means nothing to compare)."""
    if value is not None and value.tzinfo is None:
        raise Invalid(f"{name} needs a time zone (e.g. Z)", pointer=f"/query/{name}")
    return value


@dataclass(frozen=True)
class PeriodQuery:
    """The `since` and `until` of a figure's period, as the query gave them."""

    since: datetime | None
    until: datetime | None

    def resolve(self, now: datetime) -> tuple[datetime, datetime]:
        """The period: as given, or the 30 days before `until` (default now)."""
        until = zoned("until", self.until) or now
        since = zoned("since", self.since) or until - timedelta(days=30)
        if since >= until:
            raise Invalid("since must be before until", pointer="/query/since")
        return since, until


def period_query(
    since: Annotated[Instant | None, Query(description="Default: 30 days before until")] = None,
    until: Annotated[Instant | None, Query(description="Default: now")] = None,
) -> PeriodQuery:
    return PeriodQuery(since, until)


Period = Annotated[PeriodQuery, Depends(period_query)]


@router.get(
    "/v1/funnel",
    tags=["funnel"],
    summary="The shared numbers between two times",
    response_model=FunnelOut,
    responses=problems({422: "since is not before until, or a time without a zone"}),
)
async def get_funnel(
    principal: HandoffsReader,
    session: ReadSession,
    period: Period,
    group_by: Annotated[
        GroupBy | None,
        Query(description="Break the numbers down by source, medium, campaign, rule or tier"),
    ] = None,
    attribution: Annotated[
        AttributionModel,
        Query(description="How a conversion's credit is shared among the lead's touches"),
    ] = AttributionModel.FIRST_TOUCH,
) -> FunnelOut:
    now = await db_now(session)
    since, until = period.resolve(now)
    raw = await funnel_repository.funnel(session, since, until, now)
    out = funnel_out(raw, since, until)
    if group_by is not None:
        groups = await funnel_breakdown(session, since, until, group_by, attribution)
        out.breakdown = FunnelBreakdown.model_validate(
            {"group_by": group_by, "attribution": attribution, "groups": groups}
        )
    return out


@router.get(
    "/v1/insights",
    tags=["funnel"],
    summary="What sales heard, by campaign (or source, medium, routing rule, tier)",
    response_model=InsightsOut,
    responses=problems({422: "since is not before until, or a time without a zone"}),
)
async def get_insights(
    principal: HandoffsReader,
    session: ReadSession,
    period: Period,
    group_by: GroupBy = GroupBy.CAMPAIGN,
    attribution: AttributionModel = AttributionModel.FIRST_TOUCH,
) -> InsightsOut:
    since, until = period.resolve(await db_now(session))
    groups = await insights_summary(session, since, until, group_by, attribution)
    return InsightsOut.model_validate(
        {
            "since": since,
            "until": until,
            "group_by": group_by,
            "attribution": attribution,
            "groups": groups,
        }
    )


def handoff_out(handoff: Handoff, now: datetime) -> HandoffOut:
    """A handoff as the API shows it, with the time left on its running SLA clock."""
    return HandoffOut.model_validate(
        {**handoff.as_dict(), "sla_seconds_left": sla_seconds_left(handoff, now)}
    )


STAGE_ORDER = [
    ("leads", "became_lead"),
    ("mqls", "became_mql"),
    ("sqls", "became_sql"),
    ("opportunities", "became_opportunity"),
    ("customers", "became_customer"),
]


def funnel_out(raw: dict[str, Any], since: datetime, until: datetime) -> FunnelOut:
    """Stage counts, conversion between consecutive stages, SLA attainment, timings, reasons."""
    counts = {name: raw["stages"].get(transition, 0) for name, transition in STAGE_ORDER}
    names = [name for name, _ in STAGE_ORDER]
    conversion = {
        f"{a}_to_{b}": round(counts[b] / counts[a], 4) if counts[a] else None
        for a, b in zip(names, names[1:], strict=False)
    }
    h = raw["handoffs"]
    met, breached = int(h["met"]), int(h["breached"]) + int(h["overdue"])
    ratio = round(met / (met + breached), 4) if met + breached else None
    return FunnelOut(
        since=since,
        until=until,
        **counts,
        conversion=conversion,
        handoffs=h["handoffs"],
        accepted=h["accepted"],
        sla_attainment=ratio,
        sla=SlaAttainment(ratio=ratio, met=met, breached=breached, undecided=h["undecided"]),
        time_to_accept_seconds=Timing(median=h["accept_p50"], p90=h["accept_p90"]),
        time_to_first_contact_seconds=Timing(median=h["contact_p50"], p90=h["contact_p90"]),
        breaches_by_team=raw["breaches_by_team"],
        rejected_by_reason=raw["rejected_by_reason"],
        recycled=raw["stages"].get("recycled", 0),
        recycled_by_reason=raw["recycled_by_reason"],
        recycled_by_policy=raw["recycled_by_policy"],
        **sums_by_currency(raw["money"]),
    )


def document_playbook_values(app: FastAPI, playbook: Playbook) -> None:
    """List the playbook's tiers and teams as the only values of the handoff filters."""
    build = app.openapi
    values = {
        "tier": [t.name for t in playbook.taxonomy.tiers],
        "team": [t.name for t in playbook.routing.teams],
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for param in schema["paths"]["/v1/handoffs"]["get"]["parameters"]:
            if param["name"] in values:
                param["schema"] = {
                    "anyOf": [{"type": "string", "enum": values[param["name"]]}, {"type": "null"}]
                }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
