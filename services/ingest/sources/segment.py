"""Segment-spec messages (identify, track, page) from Segment's webhook destinations."""

import json
from typing import Any

from services.ingest import auth
from services.ingest.sources import (
    Ignored,
    Normalised,
    SignedRequest,
    Unusable,
    collect,
    combine_touches,
    erasure_request,
    lead_event,
    make_touch,
    page_view_activity,
    parse_time,
    snake_case,
    url_touch,
)
from shared.events import CloudEvent, Touch
from shared.settings import IngestSettings

NAME = "segment"
SECRET_SETTING = "segment_shared_secret"
SIGNATURE = "X-Signature (of the body, or of a batch's first message)"
EXAMPLE: Any = {
    "type": "track",
    "event": "Demo Request",
    "messageId": "ajs-1",
    "userId": "u-42",
    "anonymousId": "a-42",
    "context": {
        "traits": {"email": "ana@acme.example"},
        "campaign": {"name": "spring-demo", "source": "google", "medium": "cpc"},
    },
    "properties": {"plan": "team"},
    "timestamp": "2026-11-23T09:30:00Z",
}
KINDS = {"identify", "track", "page"}


def verify(secret: str, request: SignedRequest) -> None:
    """hex(HMAC-SHA1) of the raw body, or, for a batch, of its first message.

    Segment documents that a batch is signed over the first event alone, serialised as
    JavaScript's JSON.stringify does (compact, non-ASCII as is): the other messages of a
    batch are not covered by the signature.
    """
    signature = request.headers.get("x-signature")
    try:
        auth.verify_segment(secret, request.body, signature)
        return
    except auth.Unauthorized:
        first = _first_of_batch(request.body)
        if first is None:
            raise
    auth.verify_segment(secret, first, signature)


def _first_of_batch(body: bytes) -> bytes | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        payload = payload["batch"]
    if not isinstance(payload, list) or not payload:
        return None
    return json.dumps(payload[0], separators=(",", ":"), ensure_ascii=False).encode()


def normalise(payload: Any, settings: IngestSettings | None = None) -> Normalised:
    """One message, an array of messages, or {"batch": [...]}."""
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        messages = payload["batch"]
    elif isinstance(payload, list):
        messages = payload
    elif isinstance(payload, dict):
        messages = [payload]
    else:
        raise Unusable('Segment sends a message object, an array or {"batch": [...]}')
    if not messages:
        raise Unusable("the batch holds no messages")
    return collect(((_kind(m), m) for m in messages), _event)


def _kind(message: Any) -> str:
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if kind in KINDS or kind == "delete" else "other"


def _erasure(message: dict[str, Any]) -> CloudEvent:
    if not message.get("messageId"):
        raise Unusable("no messageId")
    traits = (message.get("context") or {}).get("traits") or {}
    return erasure_request(
        NAME,
        [str(message["messageId"]), "delete"],
        email=traits.get("email") if isinstance(traits, dict) else None,
        external_ids={
            name: str(message[field])
            for name, field in (("segment_user", "userId"), ("segment_anonymous", "anonymousId"))
            if message.get(field)
        },
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
    )


def _event(kind: str, message: Any) -> CloudEvent:
    if kind == "delete":  # a user deletion request: erase the person everywhere
        return _erasure(message)
    if kind not in KINDS:
        if isinstance(message, dict) and message.get("type"):
            raise Ignored()  # screen, group, alias: nothing to score
        raise Unusable("no message type")
    if not message.get("messageId"):
        raise Unusable("no messageId")
    traits = message.get("traits") or (message.get("context") or {}).get("traits") or {}
    properties = message.get("properties") or {}
    if not isinstance(traits, dict) or not isinstance(properties, dict):
        raise Unusable("traits and properties are objects")
    if kind == "identify":
        activity = "identify"
    elif kind == "track":
        activity = snake_case(str(message.get("event") or ""))
    else:
        activity = page_view_activity(properties)
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
    # A page call and an identify call may share a messageId: the type keeps them apart.
    return lead_event(
        NAME,
        [str(message["messageId"]), kind],
        email=traits.get("email"),
        external_ids=external_ids,
        attributes=attributes,
        activity_type=activity,
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
        properties={k: v for k, v in properties.items() if isinstance(v, str | int | float | bool)},
        touch=message_touch(message),
    )


def message_touch(message: dict[str, Any]) -> Touch | None:
    """Where a Segment message says the lead came from: `context.campaign` (Segment's UTM
    parameters: name, source, medium, term, content), then the UTM parameters of the page URL
    (`context.page.url`; a page call's `properties.url` is read by lead_event). The Tracking API
    and the webhook destination both come here."""
    context = message.get("context") or {}
    if not isinstance(context, dict):
        return None
    campaign = context.get("campaign")
    given = None
    if isinstance(campaign, dict):
        given = make_touch({**campaign, "campaign": campaign.get("name")})
    page = context.get("page")
    return combine_touches(given, url_touch(page.get("url") if isinstance(page, dict) else None))
