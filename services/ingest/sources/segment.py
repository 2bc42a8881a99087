"""Segment-spec messages (identify, track, page) from Segment's webhook destination."""

from typing import Any

from services.ingest.sources import (
    Normalised,
    Unusable,
    erasure_request,
    lead_event,
    parse_time,
    snake_case,
)

SOURCE = "segment"
KINDS = {"identify", "track", "page"}


def normalise(payload: Any) -> Normalised:
    """One message, an array of messages, or {"batch": [...]}."""
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        messages = payload["batch"]
    elif isinstance(payload, list):
        messages = payload
    elif isinstance(payload, dict):
        messages = [payload]
    else:
        raise Unusable("Segment sends a message object")
    out = Normalised()
    for message in messages:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "delete":  # a user deletion request: erase the person everywhere
            try:
                out.events.append((kind, _erasure(message)))
            except Unusable as exc:
                out.unusable.append((kind, message, str(exc)))
            continue
        if kind not in KINDS:
            if kind is None:
                out.unusable.append(("other", message, "no message type"))
            else:
                out.ignored.append("other")  # screen, group, alias: nothing to score
            continue
        try:
            out.events.append((kind, _event(kind, message)))
        except Unusable as exc:
            out.unusable.append((kind, message, str(exc)))
    return out


def _erasure(message: dict[str, Any]) -> Any:
    if not message.get("messageId"):
        raise Unusable("no messageId")
    traits = (message.get("context") or {}).get("traits") or {}
    return erasure_request(
        SOURCE,
        [str(message["messageId"])],
        email=traits.get("email"),
        external_ids={
            name: str(message[field])
            for name, field in (("segment_user", "userId"), ("segment_anonymous", "anonymousId"))
            if message.get(field)
        },
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
    )


def _event(kind: str, message: dict[str, Any]) -> Any:
    if not message.get("messageId"):
        raise Unusable("no messageId")
    traits = message.get("traits") or (message.get("context") or {}).get("traits") or {}
    properties = message.get("properties") or {}
    if kind == "identify":
        activity = "identify"
    elif kind == "track":
        activity = snake_case(str(message.get("event") or ""))
    else:
        path = str(properties.get("path") or properties.get("url") or "")
        activity = "pricing_page_view" if "/pricing" in path else "page_view"
    company = traits.get("company")
    attributes = {
        "first_name": traits.get("firstName") or traits.get("first_name"),
        "last_name": traits.get("lastName") or traits.get("last_name"),
        "job_title": traits.get("title"),
        "industry": traits.get("industry")
        or (company.get("industry") if isinstance(company, dict) else None),
        "company": company.get("name") if isinstance(company, dict) else company,
        "company_size": company.get("employee_count") if isinstance(company, dict) else None,
        "country": (traits.get("address") or {}).get("country"),
    }
    external_ids = {
        name: str(message[field])
        for name, field in (("segment_user", "userId"), ("segment_anonymous", "anonymousId"))
        if message.get(field)
    }
    return lead_event(
        SOURCE,
        [str(message["messageId"])],
        email=traits.get("email"),
        external_ids=external_ids,
        attributes=attributes,
        activity_type=activity,
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
        properties={k: v for k, v in properties.items() if isinstance(v, str | int | float | bool)},
    )
