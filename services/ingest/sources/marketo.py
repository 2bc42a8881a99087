"""Marketo webhooks: customers paste the template in docs/marketo-webhook-template.md."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.ingest.sources import Normalised, Unusable, lead_event, parse_time

SOURCE = "marketo"


def normalise(payload: Any, timezone: str = "UTC") -> Normalised:
    """The template's object: id, identity, attributes, activity (Marketo tokens filled in)."""
    items = payload if isinstance(payload, list) else [payload]
    out = Normalised()
    for item in items:
        try:
            out.events.append(("webhook", _event(item, ZoneInfo(timezone))))
        except Unusable as exc:
            out.unusable.append(("webhook", item, str(exc)))
    return out


def _event(item: Any, zone: ZoneInfo) -> Any:
    if not isinstance(item, dict):
        raise Unusable("the template sends an object")
    identity = item.get("identity") or {}
    activity = item.get("activity") or {}
    if not item.get("id"):
        raise Unusable("no id (the template sets it from lead and campaign tokens)")
    occurred = activity.get("occurred_at")
    # {{system.dateTime}} comes as "2026-11-23 09:30:00" in the instance's time zone.
    if isinstance(occurred, str) and len(occurred) == 19 and occurred[10] == " ":
        occurred_at = datetime.fromisoformat(occurred).replace(tzinfo=zone)
    else:
        occurred_at = parse_time(occurred)
    external_ids = {k: str(v) for k, v in (identity.get("external_ids") or {}).items() if v}
    return lead_event(
        SOURCE,
        [str(item["id"])],
        email=(identity.get("email") or "").strip() or None,
        external_ids=external_ids,
        attributes=item.get("attributes") or {},
        activity_type=str(activity.get("type") or ""),
        occurred_at=occurred_at,
        properties=activity.get("properties") or {},
    )
