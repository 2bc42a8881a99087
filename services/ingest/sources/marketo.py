"""Marketo webhooks: customers paste the template in docs/marketo-webhook-template.md."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.ingest import auth
from services.ingest.sources import (
    Normalised,
    SignedRequest,
    Unusable,
    collect,
    combine_touches,
    lead_event,
    make_touch,
    parse_time,
    utm_touch,
)
from shared.events import CloudEvent, Touch
from shared.settings import IngestSettings

NAME = "marketo"
SECRET_SETTING = "marketo_token"
SIGNATURE = "X-Leadrouter-Token (Marketo signs nothing)"
EXAMPLE: Any = {
    "id": "42-1001-2026-11-23 09:30:00",
    "identity": {"email": "ana@acme.example", "external_ids": {"marketo": "42"}},
    "attributes": {"company": "Acme", "job_title": "VP Sales"},
    "activity": {"type": "form_submit", "occurred_at": "2026-11-23 09:30:00"},
    "touch": {"program": "Spring Webinar", "smart_campaign": "Webinar signups", "source": "Web"},
}


def verify(secret: str, request: SignedRequest) -> None:
    """The static token of the template's custom header, compared in constant time."""
    auth.verify_token(secret, request.headers.get("x-leadrouter-token"))


def normalise(payload: Any, settings: IngestSettings | None = None) -> Normalised:
    """The template's object (or a non-empty array of them), Marketo tokens filled in."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(item, dict) for item in items):
        raise Unusable("the Marketo template sends an object (or an array of objects)")
    zone = ZoneInfo(settings.marketo_timezone if settings else "UTC")
    return collect((("webhook", item) for item in items), lambda _, item: _event(item, zone))


def _event(item: dict[str, Any], zone: ZoneInfo) -> CloudEvent:
    identity = item.get("identity") or {}
    activity = item.get("activity") or {}
    if not isinstance(identity, dict) or not isinstance(activity, dict):
        raise Unusable("identity and activity are objects in the template")
    if not item.get("id"):
        raise Unusable("no id (the template sets it from lead and campaign tokens)")
    occurred = activity.get("occurred_at")
    # {{system.dateTime}} comes as "2026-11-23 09:30:00" in the instance's time zone.
    if isinstance(occurred, str) and len(occurred) == 19 and occurred[10] == " ":
        try:
            occurred_at = datetime.fromisoformat(occurred).replace(tzinfo=zone)
        except ValueError as exc:
            raise Unusable(f"unreadable time {occurred!r}") from exc
    else:
        occurred_at = parse_time(occurred)
    external_ids = {k: str(v) for k, v in (identity.get("external_ids") or {}).items() if v}
    return lead_event(
        NAME,
        [str(item["id"])],
        email=(str(identity.get("email") or "")).strip() or None,
        external_ids=external_ids,
        attributes=item.get("attributes") or {},
        activity_type=str(activity.get("type") or ""),
        occurred_at=occurred_at,
        properties=activity.get("properties") or {},
        touch=template_touch(item.get("touch")),
    )


def template_touch(given: Any) -> Touch | None:
    """The template's `touch`: the Marketo program is the campaign, the smart campaign that
    called the webhook its content; source, medium, term and content as filled in, and UTM
    values (utm_source, ...) from the person's fields fill what is left."""
    if not isinstance(given, dict):
        return None
    marketo = make_touch(
        {
            **given,
            "campaign": given.get("campaign") or given.get("program"),
            "content": given.get("content") or given.get("smart_campaign"),
        }
    )
    return combine_touches(marketo, utm_touch(given))
