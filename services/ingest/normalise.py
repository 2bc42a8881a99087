"""Pure normalisation of incoming payloads into the CloudEvents envelope."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events import (
    LEAD_ACTIVITY,
    Activity,
    CloudEvent,
    Identity,
    LeadActivityData,
    derived_event_id,
    lead_key,
)


class NativeLeadEvent(BaseModel):
    """A lead event as the native API takes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "web-7f3a",
                    "identity": {"email": "ana@acme.example"},
                    "attributes": {"company": "Acme", "company_size": 250, "country": "DE"},
                    "activity": {
                        "type": "demo_request",
                        "occurred_at": "2026-11-23T09:30:00Z",
                        "properties": {"page": "/demo"},
                    },
                }
            ]
        },
    )

    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Your id for this event; a retried event with the same id is counted once",
    )
    identity: Identity
    attributes: dict[str, Any] = Field(default_factory=dict)
    activity: Activity

    @model_validator(mode="after")
    def _identified(self) -> "NativeLeadEvent":
        if not self.identity.email and not self.identity.external_ids:
            raise ValueError("identity needs an email or at least one external id")
        return self


def native_to_cloud_event(item: NativeLeadEvent, source: str) -> CloudEvent:
    """The envelope for a native event; its id is derived from the caller's id when given."""
    event_id = derived_event_id(source, item.id) if item.id else str(uuid.uuid4())
    return activity_event(
        event_id=event_id,
        source=source,
        data=LeadActivityData(
            identity=item.identity, attributes=item.attributes, activity=item.activity
        ),
    )


def activity_event(event_id: str, source: str, data: LeadActivityData) -> CloudEvent:
    """A lead activity CloudEvent, keyed by the lead and timed by when the activity happened."""
    occurred_at: datetime = data.activity.occurred_at
    return CloudEvent(
        id=event_id,
        source=f"leadrouter/ingest/{source}",
        type=LEAD_ACTIVITY,
        time=occurred_at,
        subject=lead_key(data.identity),
        data=data.model_dump(mode="json"),
    )


__all__ = ["Activity", "Identity", "NativeLeadEvent", "activity_event", "native_to_cloud_event"]
