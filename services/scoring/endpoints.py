"""Scoring's HTTP API: read a lead's score, explanation and stage."""

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from services.scoring import repository
from services.scoring.core import LeadState, evaluate, from_us
from services.scoring.schemas import ActivityOut, Contribution, LeadOut
from shared.auth import Admin, LeadsReader
from shared.errors import Invalid, NotFound
from shared.http import ReadSession, WriteSession
from shared.playbook import Playbook

router = APIRouter(prefix="/v1/leads", tags=["leads"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No lead has this key, alias or email"}
}


@router.get(
    "",
    summary="Find a lead by email or by any platform id",
    response_model=LeadOut,
    responses=NOT_FOUND,
)
async def find_lead(
    principal: LeadsReader,
    request: Request,
    session: ReadSession,
    email: str | None = Query(None, min_length=3),
    alias: str | None = Query(None, description="e.g. hubspot:123, segment_anonymous:abc"),
) -> LeadOut:
    if not email and not alias:
        raise Invalid("give email or alias", pointer="/email")
    if email:
        state = await repository.find_by_email(session, email)
    else:
        state = await repository.get_lead(session, alias or "")
    if state is None:
        raise NotFound("no such lead")
    identities = await repository.aliases_of(session, [state.lead_key])
    return lead_out(state, request.app.state.playbook, datetime.now(UTC), sorted(identities))


@router.get(
    "/{lead_id}",
    summary="A lead's score now, its explanation, tier and stage (by key or any alias)",
    response_model=LeadOut,
    responses=NOT_FOUND,
)
async def get_lead(
    principal: LeadsReader, request: Request, session: ReadSession, lead_id: str
) -> LeadOut:
    state = await repository.get_lead(session, lead_id)
    if state is None:
        raise NotFound(f"no lead {lead_id!r}")
    identities = await repository.aliases_of(session, [state.lead_key])
    return lead_out(state, request.app.state.playbook, datetime.now(UTC), sorted(identities))


@router.delete(
    "/{lead_id}",
    status_code=204,
    summary="Erase a lead's personal data (admin): by key, alias or email:<address>",
    description="Removes the lead's profile, aliases, score history and timers, anonymises its "
    "handoffs (funnel counts stay), and publishes leadrouter.lifecycle.erased carrying only "
    "the lead key. Later events start a new lead only if they carry an email or id again.",
    responses=NOT_FOUND,
)
async def erase_lead(
    principal: Admin, request: Request, session: WriteSession, lead_id: str
) -> Response:
    erased = await request.app.state.scoring.erase(
        session, [lead_id], actor=principal.name, cause=f"erasure:{uuid.uuid4()}"
    )
    if not erased:
        raise NotFound(f"no lead {lead_id!r}")
    return Response(status_code=204)


def lead_out(
    state: LeadState, playbook: Playbook, now: datetime, identities: list[str] | None = None
) -> LeadOut:
    """A lead as the API shows it: scored now (decay included), and as last stored."""
    at = max(now, state.evaluated_at) if state.evaluated_at else now
    current = evaluate(state, playbook, at)
    return LeadOut(
        lead_id=state.lead_key,
        lead_key=state.lead_key,
        email=state.email,
        attributes=state.attributes,
        score=current.total,
        fit_score=current.fit,
        behaviour_score=current.behaviour,
        tier=playbook.taxonomy.tier_for(current.total),
        stage=state.stage,
        stage_definition=playbook.taxonomy.stages.get(state.stage, ""),
        identities=identities or [],
        events_count=state.events_count,
        explanation=[Contribution(rule=r, points=p) for r, p in current.contributions],
        activities=[
            ActivityOut(rule=rule, points=points, at=from_us(at_us))
            for at_us, _, rule, points in state.behaviour.recent
        ],
        scored_at=at,
        last_activity_at=state.last_activity_at,
    )
