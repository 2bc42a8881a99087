"""The goal-status event: a goal's standing changed (on track, at risk, off track, met, missed).

Written by handoff's goals job to `leadrouter.goals.v1`, keyed (CloudEvents `subject`) by
`goal:<goal id>`, once per change of a goal's status in a period.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

GOAL_STATUS_CHANGED = "leadrouter.goal.status_changed"

Status = Literal["on_track", "at_risk", "off_track", "met", "missed"]


class GoalStatusData(BaseModel):
    """The `data` of a goal-status event (type leadrouter.goal.status_changed)."""

    goal_id: str = Field(description="The goal's id in the playbook")
    title: str
    metric: str = Field(
        description="mqls, mql_acceptance_rate, mql_to_sql, sqls, pipeline, "
        "revenue, accept_sla or contact_sla"
    )
    owner: Literal["marketing", "sales", "both"] = Field(description="Whose commitment it is")
    period: Literal["week", "month", "quarter"]
    team: str | None = None
    tier: str | None = None
    period_start: datetime
    period_end: datetime
    target: float
    actual: float | None = Field(description="None: a rate with nothing to divide by yet")
    expected: float = Field(description="What the target implies by now")
    projection: float | None = Field(description="Where the period ends at this pace")
    status: Status
    previous_status: Status | None = Field(description="None: the period's first status")
