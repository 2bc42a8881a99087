"""Pure scoring: apply one activity to a lead's state under the playbook, no I/O, no clock."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.events import LeadActivityData
from shared.playbook import Playbook

STAGE_LEAD = "lead"
STAGE_MQL = "mql"
BECAME_MQL = "became_mql"


@dataclass(frozen=True)
class LeadState:
    """What scoring knows about one lead."""

    lead_key: str
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    score: int = 0
    stage: str = STAGE_LEAD
    events_count: int = 0
    # rule name -> points it contributed, so every score is explainable
    contributions: dict[str, int] = field(default_factory=dict)
    last_activity_at: datetime | None = None

    def explanation(self) -> list[dict[str, Any]]:
        """The score's contributions, largest first."""
        return [
            {"rule": rule, "points": points}
            for rule, points in sorted(self.contributions.items(), key=lambda kv: (-kv[1], kv[0]))
        ]


@dataclass(frozen=True)
class Transition:
    """A lifecycle change caused by an activity."""

    name: str
    previous_stage: str
    stage: str


def apply_activity(
    state: LeadState, data: LeadActivityData, playbook: Playbook
) -> tuple[LeadState, list[Transition]]:
    """The lead after one activity, and the lifecycle transitions it caused."""
    points = {rule.activity: rule.points for rule in playbook.scoring.behaviour}
    activity = data.activity
    contributions = dict(state.contributions)
    earned = points.get(activity.type, 0)
    if earned:
        rule = f"behaviour:{activity.type}"
        contributions[rule] = contributions.get(rule, 0) + earned
    score = sum(contributions.values())
    last = state.last_activity_at
    new = replace(
        state,
        email=data.identity.email or state.email,
        attributes={**state.attributes, **data.attributes},
        score=score,
        events_count=state.events_count + 1,
        contributions=contributions,
        last_activity_at=max(last, activity.occurred_at) if last else activity.occurred_at,
    )
    transitions = []
    if state.stage == STAGE_LEAD and score >= playbook.taxonomy.mql_threshold:
        new = replace(new, stage=STAGE_MQL)
        transitions.append(Transition(BECAME_MQL, state.stage, STAGE_MQL))
    return new, transitions
