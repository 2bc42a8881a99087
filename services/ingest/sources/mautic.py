"""Mautic webhooks: an object keyed by trigger, each holding a list of event payloads.

Shapes follow Mautic's developer documentation ("Webhook events and payloads") and the
payload files its "Send Test Payload" button posts (one object per trigger, not a list,
and the time only at the top level or in the object's own date field).
"""

from typing import Any

from services.ingest import auth
from services.ingest.sources import (
    Ignored,
    Normalised,
    SignedRequest,
    Unusable,
    collect,
    combine_touches,
    lead_event,
    make_touch,
    page_view_activity,
    parse_time,
    utm_touch,
)
from shared.events import CloudEvent, Touch
from shared.settings import IngestSettings

NAME = "mautic"
SECRET_SETTING = "mautic_webhook_secret"
SIGNATURE = "Webhook-Signature"
EXAMPLE: Any = {
    "mautic.form_on_submit": [
        {
            "submission": {
                "id": 7,
                "form": {"id": 1, "name": "Demo request", "alias": "demo"},
                "lead": {
                    "id": 42,
                    "fields": {"core": {"email": {"value": "ana@acme.example"}}},
                },
                "referer": "https://acme.example/demo",
            },
            "timestamp": "2026-11-23T09:30:00+00:00",
        }
    ]
}

# trigger -> (activity type, key of the object holding the contact, or None: the item itself)
TRIGGERS = {
    "mautic.lead_post_save_new": ("contact_identified", None),
    "mautic.lead_post_save_update": ("contact_updated", None),
    "mautic.lead_points_change": ("mautic_points_change", None),
    "mautic.lead_channel_subscription_changed": ("unsubscribe", None),
    "mautic.form_on_submit": ("form_submit", "submission"),
    "mautic.page_on_hit": ("page_view", "hit"),
    "mautic.email_on_open": ("email_open", "stat"),
}
# The holder's own time field, used when an item has no `timestamp` (test payloads).
HOLDER_TIMES = ("dateSubmitted", "dateHit", "dateRead", "lastOpened")
# Mautic contact fields (API names, in any field group) -> leadrouter attribute names.
FIELD_ATTRIBUTES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "position": "job_title",
    "country": "country",
    "city": "city",
}


def verify(secret: str, request: SignedRequest) -> None:
    """base64(HMAC-SHA256(secret, raw body)) in Webhook-Signature."""
    auth.verify_mautic(secret, request.body, request.headers.get("webhook-signature"))


def normalise(payload: Any, settings: IngestSettings | None = None) -> Normalised:
    """Each payload of a known trigger becomes a lead event; other triggers are ignored."""
    if not isinstance(payload, dict):
        raise Unusable("Mautic sends an object keyed by trigger")
    delivered_at = payload.get("timestamp")  # set by Mautic when it sends (queued or test)
    items: list[tuple[str, Any]] = []
    for trigger, value in payload.items():
        if not trigger.startswith("mautic.") and not isinstance(value, list):
            continue  # delivery metadata such as the top-level timestamp
        # A queued delivery holds a list per trigger; "Send Test Payload" one object.
        for item in value if isinstance(value, list) else [value]:
            items.append((trigger if trigger in TRIGGERS else "other", item))
    if not items:
        raise Unusable("no trigger in the payload (e.g. mautic.form_on_submit)")
    return collect(items, lambda kind, item: _event(kind, item, delivered_at))


def _event(trigger: str, item: Any, delivered_at: Any) -> CloudEvent:
    if trigger not in TRIGGERS:
        raise Ignored()
    if not isinstance(item, dict):
        raise Unusable("a payload item is not an object")
    activity_type, holder_key = TRIGGERS[trigger]
    # Documented for email_on_open as the email-send shape (contact at the top); Mautic
    # itself has sent a "stat" object holding the lead, so take either.
    holder: Any
    if holder_key is None:
        holder = item
    elif holder_key == "stat":
        holder = item.get("stat", item)
    else:
        holder = item.get(holder_key)
    if not isinstance(holder, dict):
        raise Unusable(f"no {holder_key} object")
    contact = holder.get("contact") or holder.get("lead") or item.get("contact")
    if not isinstance(contact, dict) or contact.get("id") is None:
        raise Unusable("no contact with an id")
    fields = _fields(contact)
    properties: dict[str, Any] = {}
    occurrence = holder.get("id") if holder is not item else None
    if trigger == "mautic.form_on_submit":
        form = holder.get("form") or {}
        properties = {"form": form.get("alias") or form.get("name"), "url": holder.get("referer")}
    elif trigger == "mautic.page_on_hit":
        properties = {"url": holder.get("url"), "title": holder.get("urlTitle")}
        activity_type = page_view_activity(properties)
    elif trigger == "mautic.email_on_open":
        properties = {"email": (holder.get("email") or {}).get("name")}
        occurrence = occurrence or item.get("idHash")
    elif trigger == "mautic.lead_points_change":
        properties = dict(item.get("points") or {})
    elif trigger == "mautic.lead_channel_subscription_changed":
        if item.get("new_status") != "unsubscribed":
            raise Ignored()
        properties = {"channel": item.get("channel"), "previous_status": item.get("old_status")}
    timestamp = item.get("timestamp") or next(
        (holder[name] for name in HOLDER_TIMES if holder.get(name)), delivered_at
    )
    return lead_event(
        NAME,
        [trigger, str(contact["id"]), str(occurrence or ""), str(timestamp)],
        email=fields.get("email"),
        external_ids={"mautic": str(contact["id"])},
        attributes={attr: fields.get(name) for name, attr in FIELD_ATTRIBUTES.items()},
        activity_type=activity_type,
        occurred_at=parse_time(timestamp),
        properties={k: v for k, v in properties.items() if v is not None},
        touch=combine_touches(
            hit_touch(holder) if trigger == "mautic.page_on_hit" else None, utm_tags(contact)
        ),
    )


def hit_touch(hit: dict[str, Any]) -> Touch | None:
    """A page hit's UTM parameters (its `query`; lead_event also reads its `url`) and, with no
    utm_medium, what Mautic says generated the link (`source`, e.g. email or sms)."""
    query = hit.get("query")
    given = utm_touch(query) if isinstance(query, dict) else None
    return combine_touches(given, make_touch({"medium": hit.get("source")}))


def utm_tags(contact: dict[str, Any]) -> Touch | None:
    """The latest of the contact's UTM tags (Mautic keeps them per contact), in either the
    utm_source or the utmSource spelling."""
    tags = contact.get("utmtags")
    if not isinstance(tags, list) or not tags or not isinstance(tags[-1], dict):
        return None
    tag = tags[-1]
    names = ("source", "medium", "campaign", "term", "content")
    return make_touch({n: tag.get(f"utm_{n}") or tag.get(f"utm{n.capitalize()}") for n in names})


def _fields(contact: dict[str, Any]) -> dict[str, Any]:
    """Field values by API name, from Mautic's groups (core, social, personal, professional)."""
    groups = contact.get("fields")
    values: dict[str, Any] = {}
    if isinstance(groups, dict):  # Mautic sends [] when a contact has no fields
        for group in groups.values():
            if isinstance(group, dict):
                for name, field in group.items():
                    if isinstance(field, dict) and "value" in field:
                        values.setdefault(name, field["value"])
    return values
