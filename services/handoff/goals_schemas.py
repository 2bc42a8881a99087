"""Response models of GET /v1/goals."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from services.handoff.goals import GoalProgress

Status = Literal["on_track", "at_risk", "off_track", "met", "missed"]


class GoalOut(BaseModel):
    """One goal's standing in its period."""

    goal_id: str
    title: str
    metric: str
    owner: Literal["marketing", "sales", "both"]
    period: Literal["week", "month", "quarter"]
    team: str | None
    tier: str | None
    period_start: datetime
    period_end: datetime
    target: float
    elapsed: float = Field(description="Share of the period gone, by the goal's pace")
    actual: float | None = Field(description="To date; None: a rate with nothing to divide by")
    expected: float = Field(description="What the target implies by now (a rate: the target)")
    projection: float | None = Field(description="Where the period ends at the pace so far")
    gap: float | None = Field(description="actual - expected: negative is behind")
    status: Status
    stage: str = Field(description="The funnel stage the goal measures")
    value: float = Field(description="The count or amount, or a rate's numerator")
    out_of: float | None = Field(description="A rate's denominator")

    @classmethod
    def of(cls, p: GoalProgress) -> "GoalOut":
        return cls.model_validate(p.as_dict())


class GoalsOut(BaseModel):
    """Every goal of the playbook at `at`, and where the gap sits."""

    at: datetime
    gap_stage: str | None = Field(
        description="The funnel stage with the largest shortfall against what the goals imply"
    )
    goals: list[GoalOut]
