"""Pure normalisers: one module per platform, each turning a verified payload into lead events."""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.ingest.normalise import activity_event
from shared.events import (
    ERASURE_REQUESTED,
    Activity,
    CloudEvent,
    Identity,
    LeadActivityData,
    derived_event_id,
    lead_key,
)


class Unusable(ValueError):
    """A well-formed item that cannot become a lead event (it goes to the DLQ)."""


@dataclass
class Normalised:
    """What a payload became: events to publish, items ignored, items for the DLQ.

    `kind` is the platform's own event kind (bounded: unknown kinds are reported as "other").
    """

    events: list[tuple[str, CloudEvent]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unusable: list[tuple[str, Any, str]] = field(default_factory=list)


def lead_event(
    source: str,
    source_event_id: list[str],
    *,
    email: str | None,
    external_ids: dict[str, str],
    attributes: dict[str, Any],
    activity_type: str,
    occurred_at: datetime,
    properties: dict[str, Any] | None = None,
) -> CloudEvent:
    """A lead activity event; its id is derived from the platform's own event id."""
    size = attributes.get("company_size")
    if isinstance(size, str) and size.strip().isdigit():
        attributes = {**attributes, "company_size": int(size)}
    try:
        data = LeadActivityData(
            identity=Identity(email=email or None, external_ids=external_ids),
            attributes={k: v for k, v in attributes.items() if v not in (None, "")},
            activity=Activity(
                type=activity_type, occurred_at=occurred_at, properties=properties or {}
            ),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unusable(f"{where}: {first['msg']}") from exc
    if not data.identity.email and not data.identity.external_ids:
        raise Unusable("no email and no platform id to identify the lead")
    return activity_event(derived_event_id(source, *source_event_id), source, data)


def snake_case(name: str) -> str:
    """'Demo Requested' -> 'demo_requested': platform event names as activity types."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        raise Unusable(f"event name {name!r} does not make an activity type")
    return cleaned


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time or epoch milliseconds; naive times are taken as UTC."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str) or not value:
        raise Unusable("the event has no time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unusable(f"unreadable time {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def erasure_request(
    source: str,
    source_event_id: list[str],
    *,
    email: str | None,
    external_ids: dict[str, str],
    occurred_at: datetime,
) -> CloudEvent:
    """A request to erase a person (scoring erases every lead these names point at)."""
    try:
        identity = Identity(email=email or None, external_ids=external_ids)
    except ValidationError as exc:
        raise Unusable(f"identity: {exc.errors()[0]['msg']}") from exc
    if not identity.email and not identity.external_ids:
        raise Unusable("an erasure request without an email or platform id")
    return CloudEvent(
        id=derived_event_id(source, "erasure", *source_event_id),
        source=f"leadrouter/ingest/{source}",
        type=ERASURE_REQUESTED,
        time=occurred_at,
        subject=lead_key(identity),
        data=LeadActivityData(
            identity=identity,
            activity=Activity(type="erasure_requested", occurred_at=occurred_at),
        ).model_dump(mode="json"),
    )
