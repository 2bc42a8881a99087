"""Pure normalisation of incoming payloads into the CloudEvents envelope."""

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from shared.events import (
    ERASURE_REQUESTED,
    LEAD_ACTIVITY,
    TOUCH_FIELDS,
    Activity,
    CloudEvent,
    Identity,
    LeadActivityData,
    Touch,
    derived_event_id,
    lead_key,
)


class Unusable(ValueError):
    """A well-formed item that cannot become a lead event (it goes to the DLQ)."""


# RFC 3339 section 5.6 date-time: a zone (Z or an offset) is required.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("give an RFC 3339 date-time string with a zone, e.g. 2026-11-23T09:30:00Z")
    return value


class NativeActivity(Activity):
    """An activity as the native API takes it: its time is an RFC 3339 string with a zone."""

    occurred_at: Annotated[
        AwareDatetime,
        BeforeValidator(_rfc3339),
        Field(
            description="When it happened: an RFC 3339 date-time with a zone, at most "
            "LEADROUTER_CLOCK_SKEW_S (300 s) ahead of ingest's clock",
            json_schema_extra={"format": "date-time"},
        ),
    ]


def _document_limits(schema: dict[str, Any]) -> None:
    """What the validators check, said in the JSON Schema too (so generated clients know)."""
    properties = schema["properties"]
    properties["identity"] = {
        "allOf": [
            properties["identity"],
            {
                "description": "An email, or at least one external id",
                "anyOf": [
                    {"required": ["email"], "properties": {"email": {"type": "string"}}},
                    {
                        "required": ["external_ids"],
                        "properties": {"external_ids": {"minProperties": 1}},
                    },
                ],
            },
        ]
    }
    properties["attributes"]["maxProperties"] = 100
    schema["examples"] = [
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


class NativeLeadEvent(BaseModel):
    """A lead event as the native API takes it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_limits)
    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Your id for this event; a retried event with the same id is counted once",
    )
    identity: Identity
    attributes: dict[str, Any] = Field(default_factory=dict)
    activity: NativeActivity
    touch: Touch | None = Field(
        None,
        description="Where the lead came from at this activity (gaps are filled from the UTM "
        "parameters of activity.properties.url)",
    )

    @model_validator(mode="after")
    def _identified(self) -> "NativeLeadEvent":
        if not self.identity.email and not self.identity.external_ids:
            raise ValueError("identity needs an email or at least one external id")
        return self


def native_to_cloud_event(item: NativeLeadEvent, source: str) -> CloudEvent:
    """The envelope for a native event; its id is derived from the caller's id when given."""
    event_id = derived_event_id(source, item.id) if item.id else str(uuid.uuid4())
    # `item` is validated and has the fields of LeadActivityData (an activity's time is the
    # same AwareDatetime): one dump of it is the data, where building and validating the
    # lead event's models again cost a third of ingest's CPU per event
    # (tests/unit/test_ingest_normalise.py checks it is what validation would give).
    data = item.model_dump(mode="json", exclude={"id"})
    activity = data["activity"]
    activity["properties"] = with_url_fields(activity["properties"])
    touch = combine_touches(item.touch, url_touch(activity["properties"].get("url")))
    data["touch"] = touch.model_dump(mode="json") if touch else None
    # Validating the envelope (its data is a plain dict) costs about half of model_construct,
    # which fills each default in Python.
    return CloudEvent.model_validate(
        {
            "id": event_id,
            "source": f"leadrouter/ingest/{source}",
            "type": LEAD_ACTIVITY,
            "time": item.activity.occurred_at,
            "subject": lead_key(item.identity),
            "data": data,
        }
    )


def with_url_fields(properties: Any) -> Any:
    """One URL shape for every platform: `url`, `path`, `host` and `query` from what was sent.

    A full `url` gives the other three; a `path` alone stays a path. Fields already sent
    are kept, so a playbook rule on `path` or `host` matches whichever platform sent it.
    """
    url = properties.get("url") if isinstance(properties, dict) else None
    if not isinstance(url, str) or not url:
        return properties
    try:
        parts = urlsplit(url)
    except ValueError:
        return properties  # not a URL after all: keep what was sent
    derived = {"path": parts.path or "/", "host": parts.hostname, "query": parts.query}
    out = dict(properties)
    for name, value in derived.items():
        if value and not out.get(name):
            out[name] = value
    return out


# UTM parameters, as every platform's page URLs carry them, and the touch field each fills.
UTM_FIELDS = {f"utm_{name}": name for name in TOUCH_FIELDS}
TOUCH_VALUE_MAX = 200


def make_touch(values: Mapping[str, Any], original: bool = False) -> Touch | None:
    """A touch from {field: value} (source, medium, ...), text trimmed; None when all empty."""
    kept = {}
    for name in TOUCH_FIELDS:
        value = values.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).strip()[:TOUCH_VALUE_MAX]
            if text:
                kept[name] = text
    return Touch(**kept, original=original) if kept else None


def utm_touch(params: Mapping[str, Any]) -> Touch | None:
    """A touch from UTM parameters (utm_source, utm_medium, ...)."""
    return make_touch({field: params.get(utm) for utm, field in UTM_FIELDS.items()})


def url_touch(url: Any) -> Touch | None:
    """A touch from the UTM parameters of a page URL."""
    if not isinstance(url, str) or "utm_" not in url:
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    return utm_touch(dict(parse_qsl(query)))


def combine_touches(*touches: Touch | None) -> Touch | None:
    """Field by field, the first touch that has a value (what the platform said explicitly
    first, then what its URLs say)."""
    given = [t for t in touches if t is not None]
    if not given:
        return None
    values = {
        name: next((getattr(t, name) for t in given if getattr(t, name)), None)
        for name in TOUCH_FIELDS
    }
    return make_touch(values, original=given[0].original)


def activity_event(event_id: str, source: str, data: LeadActivityData) -> CloudEvent:
    """A lead activity CloudEvent, keyed by the lead and timed by when the activity happened.

    `data` is validated; so is the envelope (cheaper than model_construct, see above).
    """
    occurred_at: datetime = data.activity.occurred_at
    return CloudEvent.model_validate(
        {
            "id": event_id,
            "source": f"leadrouter/ingest/{source}",
            "type": LEAD_ACTIVITY,
            "time": occurred_at,
            "subject": lead_key(data.identity),
            "data": data.model_dump(mode="json"),
        }
    )


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
    touch: Touch | None = None,
) -> CloudEvent:
    """A lead activity event; its id is derived from everything that makes the item distinct.

    Its touch is the one given, with gaps filled from the UTM parameters of its page URL.
    """
    size = attributes.get("company_size")
    if isinstance(size, str) and size.strip().isdigit():
        attributes = {**attributes, "company_size": int(size)}
    try:
        properties = with_url_fields(properties or {})
        data = LeadActivityData(
            identity=Identity(email=email or None, external_ids=external_ids),
            attributes={k: v for k, v in attributes.items() if v not in (None, "")},
            activity=Activity(type=activity_type, occurred_at=occurred_at, properties=properties),
            touch=combine_touches(touch, url_touch(properties.get("url"))),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unusable(f"{where}: {first['msg']}") from exc
    if not data.identity.email and not data.identity.external_ids:
        raise Unusable("no email and no platform id to identify the lead")
    return activity_event(derived_event_id(source, *source_event_id), source, data)


__all__ = [
    "Activity",
    "Identity",
    "NativeLeadEvent",
    "Unusable",
    "activity_event",
    "erasure_request",
    "lead_event",
    "native_to_cloud_event",
]
