"""GET /v1/goals: each goal's actual, expected, projection, gap and status, and the gap's stage."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from services.handoff.endpoints import zoned
from services.handoff.goals import gap_stage
from services.handoff.goals_schemas import GoalOut, GoalsOut
from services.handoff.goals_service import evaluate
from services.handoff.schemas import problems
from shared.auth import HandoffsReader
from shared.db import db_now
from shared.http import ReadSession
from shared.playbook import Playbook
from shared.strict import Instant

router = APIRouter()


@router.get(
    "/v1/goals",
    tags=["funnel"],
    summary="The shared goals: actual, expected, projection, gap and status",
    response_model=GoalsOut,
    responses=problems({422: "A time without a zone, or an unknown owner"}),
)
async def get_goals(
    principal: HandoffsReader,
    request: Request,
    session: ReadSession,
    at: Annotated[
        Instant | None,
        Query(description="Show the goals as they stood at this time. Default: now"),
    ] = None,
    owner: Annotated[
        Literal["marketing", "sales", "both"] | None, Query(description="Only this side's goals")
    ] = None,
) -> GoalsOut:
    playbook: Playbook = request.app.state.playbook
    now = await db_now(session)
    at = min(zoned("at", at) or now, now)
    goals = [g for g in playbook.goals if owner is None or g.owned_by == owner]
    progresses = await evaluate(session, goals, at)
    return GoalsOut(
        at=at, gap_stage=gap_stage(progresses), goals=[GoalOut.of(p) for p in progresses]
    )
