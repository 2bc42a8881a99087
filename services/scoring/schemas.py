"""What the scoring API answers: a lead as both teams see it."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.vocabulary import Stage


class Contribution(BaseModel):
    """One rule's points in a score, decayed to the time the score was taken."""

    rule: str
    points: float


class ActivityOut(BaseModel):
    """One scored activity: the rule it matched and its points before caps and decay."""

    rule: str
    points: int
    at: datetime


class LeadOut(BaseModel):
    """A lead's score now (decay included), its explanation, tier and lifecycle stage."""

    lead_id: str = Field(description="The lead's canonical key (e.g. email:ana@acme.example)")
    lead_key: str = Field(description="Same as lead_id (kept for existing clients)")
    email: str | None
    attributes: dict[str, Any]
    score: float
    fit_score: float
    behaviour_score: float
    tier: str | None
    stage: Stage
    stage_definition: str
    identities: list[str] = Field(
        default_factory=list,
        description="Every key and platform id that points at this lead (email:..., hubspot:...)",
    )
    events_count: int
    explanation: list[Contribution]
    activities: list[ActivityOut] = Field(
        default_factory=list,
        description="The newest scored activities (up to 48), oldest first (the score's evidence)",
    )
    scored_at: datetime
    last_activity_at: datetime | None
