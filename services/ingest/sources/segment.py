"""Segment-spec messages, from Segment's webhook destination and from the Tracking API.

The same normaliser serves POST /v1/webhooks/segment (signed by Segment's cloud) and the
Tracking API that analytics.js and the server SDKs call directly (services/ingest/tracking.py):
identify, track, page, screen, group and alias each become a lead event; `delete` an erasure.
"""

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
KINDS = {"identify", "track", "page", "screen", "group", "alias"}
# The campaign fields of the spec's context, as the activity properties rules may test.
CAMPAIGN_FIELDS = {"source", "medium", "name", "term", "content"}
# The page fields of the spec's context (analytics.js adds them to every call).
PAGE_FIELDS = ("url", "path", "referrer", "search", "title")


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


def normalise(
    payload: Any, settings: IngestSettings | None = None, *, source: str = NAME
) -> Normalised:
    """One message, an array of messages, or {"batch": [...]}; events are from `source`."""
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
    return collect(((_kind(m), m) for m in messages), lambda k, m: _event(k, m, source))


def _kind(message: Any) -> str:
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if kind in KINDS or kind == "delete" else "other"


def _erasure(message: dict[str, Any], source: str) -> CloudEvent:
    if not message.get("messageId"):
        raise Unusable("no messageId")
    traits = (message.get("context") or {}).get("traits") or {}
    return erasure_request(
        source,
        [str(message["messageId"]), "delete"],
        email=traits.get("email") if isinstance(traits, dict) else None,
        external_ids={
            name: str(message[field])
            for name, field in (("segment_user", "userId"), ("segment_anonymous", "anonymousId"))
            if message.get(field)
        },
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
    )


def _event(kind: str, message: Any, source: str = NAME) -> CloudEvent:
    if kind == "delete":  # a user deletion request: erase the person everywhere
        return _erasure(message, source)
    if kind not in KINDS:
        if isinstance(message, dict) and message.get("type"):
            raise Ignored()  # a type the spec does not define: nothing to score
        raise Unusable("no message type")
    if not message.get("messageId"):
        raise Unusable("no messageId")
    context = message.get("context") or {}
    if not isinstance(context, dict):
        raise Unusable("context is an object")
    traits = message.get("traits") or context.get("traits") or {}
    properties = message.get("properties") or {}
    if not isinstance(traits, dict) or not isinstance(properties, dict):
        raise Unusable("traits and properties are objects")
    external_ids = {
        name: str(message[field])
        for name, field in (("segment_user", "userId"), ("segment_anonymous", "anonymousId"))
        if message.get(field)
    }
    if kind == "alias":
        # previousId is the name the person had before (analytics.js: her anonymous id);
        # both names in one event bind them to one lead, merging what each had done.
        if not message.get("previousId") or not message.get("userId"):
            raise Unusable("an alias call needs previousId and userId")
        external_ids["segment_anonymous"] = str(message["previousId"])
    if kind == "group":
        attributes = _account_attributes(message.get("groupId"), traits)
        email = None  # the traits are the account's, not the person's
    else:
        attributes = _person_attributes(traits)
        email = traits.get("email")
    # A page call and an identify call may share a messageId: the type keeps them apart.
    return lead_event(
        source,
        [str(message["messageId"]), kind],
        email=email,
        external_ids=external_ids,
        attributes=attributes,
        activity_type=_activity(kind, message, properties),
        occurred_at=parse_time(message.get("timestamp") or message.get("receivedAt")),
        properties=_properties(kind, message, properties, context),
        touch=message_touch(message),
    )


def _activity(kind: str, message: dict[str, Any], properties: dict[str, Any]) -> str:
    if kind == "track":
        return snake_case(str(message.get("event") or ""))
    if kind == "page":
        return page_view_activity(properties)
    if kind == "screen":
        return "screen_view"
    return kind  # identify, group, alias: score them if the playbook names them


def _properties(
    kind: str, message: dict[str, Any], properties: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The call's scalar properties, with the page it happened on and its campaign (UTM)."""
    out = {k: v for k, v in properties.items() if isinstance(v, str | int | float | bool)}
    page = context.get("page")
    if isinstance(page, dict):
        for name in PAGE_FIELDS:
            if isinstance(page.get(name), str) and page[name] and name not in out:
                out[name] = page[name]
    if kind == "screen" and isinstance(message.get("name"), str):
        out.setdefault("name", message["name"])
    if kind == "page" and isinstance(message.get("name"), str):
        out.setdefault("name", message["name"])
    campaign = context.get("campaign")
    if isinstance(campaign, dict):
        for name in CAMPAIGN_FIELDS:
            value = campaign.get(name)
            if isinstance(value, str) and value:
                out.setdefault(f"utm_{'campaign' if name == 'name' else name}", value)
    return out


def _person_attributes(traits: dict[str, Any]) -> dict[str, Any]:
    company = traits.get("company")
    return {
        "first_name": traits.get("firstName") or traits.get("first_name"),
        "last_name": traits.get("lastName") or traits.get("last_name"),
        "job_title": traits.get("title"),
        "industry": traits.get("industry")
        or (company.get("industry") if isinstance(company, dict) else None),
        "company": company.get("name") if isinstance(company, dict) else company,
        "company_size": company.get("employee_count") if isinstance(company, dict) else None,
        "country": (traits.get("address") or {}).get("country")
        if isinstance(traits.get("address"), dict)
        else None,
    }


def _account_attributes(group_id: Any, traits: dict[str, Any]) -> dict[str, Any]:
    """A group call's traits describe the person's account (the spec's reserved group traits)."""
    address = traits.get("address")
    return {
        "account_id": str(group_id) if group_id not in (None, "") else None,
        "company": traits.get("name"),
        "industry": traits.get("industry"),
        "company_size": traits.get("employees"),
        "company_plan": traits.get("plan"),
        "company_website": traits.get("website"),
        "country": address.get("country") if isinstance(address, dict) else None,
    }


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
