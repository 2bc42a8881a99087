"""The CloudEvents 1.0 envelope and the data schemas of leadrouter's topics."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

CONTENT_TYPE = "application/cloudevents+json"

# Namespace for deterministic event ids: the same source event always gets the same id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1a6e-3f5c-4c53-9a55-3c1b8d0e7a21")

LEAD_ACTIVITY = "leadrouter.lead.activity"
# On the lead-events topic: a platform asked to erase a person (Segment delete, HubSpot privacy
# deletion); ordered with that person's events, so later events start afresh.
ERASURE_REQUESTED = "leadrouter.lead.erasure_requested"
LIFECYCLE_PREFIX = "leadrouter.lifecycle."
# On the lifecycle topic: a lead was erased; `data` carries only the lead key.
LIFECYCLE_ERASED = LIFECYCLE_PREFIX + "erased"
HANDOFF_PREFIX = "leadrouter.handoff."


def derived_event_id(*parts: str) -> str:
    """A deterministic event id from the parts that identify an event (source, its own id, ...)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(parts)))


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode; `subject` is the lead key."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str = Field(min_length=1)
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        """The structured-mode JSON encoding published to Kafka."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CloudEvent":
        """Decode and validate a structured-mode JSON event."""
        return cls.model_validate_json(raw)


class Identity(BaseModel):
    """Who the lead is: an email and/or ids in other systems (e.g. {"hubspot": "123"})."""

    email: EmailStr | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class Activity(BaseModel):
    """Something the lead did, and when it happened (event time, not arrival time)."""

    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.]*$")
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)


class LeadActivityData(BaseModel):
    """The `data` of a lead activity event on the lead-events topic."""

    identity: Identity
    attributes: dict[str, Any] = Field(default_factory=dict)
    activity: Activity


class ErasureRequestData(BaseModel):
    """The `data` of an erasure request: who to erase, by any name the platform knows."""

    identity: Identity


class ErasedData(BaseModel):
    """The `data` of a lifecycle `erased` event: the key alone, so subscribers can erase too."""

    lead_key: str


def lead_key(identity: Identity) -> str:
    """The Kafka key and CloudEvents subject of a lead: its email, else its first external id."""
    if identity.email:
        return f"email:{identity.email}"
    if identity.external_ids:
        system, value = sorted(identity.external_ids.items())[0]
        return f"{system}:{value}"
    raise ValueError("a lead needs an email or an external id")


class LifecycleData(BaseModel):
    """The `data` of a lifecycle transition: the lead in full (handoff needs no lookup)."""

    transition: str
    lead_key: str
    email: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    stage: str
    score: int
    fit_score: float | None = None
    behaviour_score: float | None = None
    tier: str | None = None
    previous_tier: str | None = None
    previous_stage: str | None = None
    explanation: list[dict[str, Any]] = Field(default_factory=list)
    qualifying_activity_at: datetime | None = None
    # Keys of leads that turned out to be this person and were merged into this lead.
    merged_keys: list[str] = Field(default_factory=list)


class HandoffData(BaseModel):
    """The `data` of a handoff event that sales tools consume."""

    handoff_id: str
    status: str
    lead_key: str
    rep_id: str | None
    rep_name: str | None = None
    team: str | None = None
    email: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    score: int
    stage: str
    explanation: list[dict[str, Any]] = Field(default_factory=list)
    routing_reason: str
    # Set on `rejected` / `recycled` events: the playbook's reason code.
    reason: str | None = None
    # Set on `converted` events: the stage the lead reached (sql, opportunity or customer).
    converted_to: str | None = None
    tier: str | None = None
    queue: str | None = Field(None, description="Set while the lead waits in a queue")
    previous_rep_id: str | None = None
    accept_by: datetime | None = None
    contact_by: datetime | None = None
    qualifying_activity_at: datetime | None = None
    # Set on `sla_breached` events: which clock ran out.
    clock: Literal["accept", "contact"] | None = None


FEEDBACK_PREFIX = "leadrouter.feedback."


class FeedbackData(BaseModel):
    """The `data` of a sales-feedback event (type leadrouter.feedback.<action>)."""

    handoff_id: str
    rep_id: str | None = None
    reason: str | None = None
    converted_to: str | None = None
