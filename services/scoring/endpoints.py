"""Scoring's HTTP API: read a lead's score, explanation and stage."""

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request

from services.scoring import repository
from services.scoring.schemas import Contribution, LeadOut
from services.scoring.scoring import LeadState, evaluate
from shared.auth import LeadsReader
from shared.errors import Invalid, NotFound
from shared.http import ReadSession
from shared.playbook import Playbook

router = APIRouter(prefix="/v1/leads", tags=["leads"])

NOT_FOUND = {404: {"description": "No lead has this key, alias or email"}}


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
    return lead_out(state, request.app.state.playbook, datetime.now(UTC))


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
    return lead_out(state, request.app.state.playbook, datetime.now(UTC))


def lead_out(state: LeadState, playbook: Playbook, now: datetime) -> LeadOut:
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
        events_count=state.events_count,
        explanation=[Contribution(rule=r, points=p) for r, p in current.contributions],
        scored_at=at,
        last_activity_at=state.last_activity_at,
    )
