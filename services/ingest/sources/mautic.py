"""Mautic webhooks: an object keyed by trigger, each holding a list of event payloads."""

from typing import Any

from services.ingest.sources import Normalised, Unusable, lead_event, parse_time

SOURCE = "mautic"

# trigger -> (activity type, key of the object holding the contact, id of the occurrence)
TRIGGERS = {
    "mautic.lead_post_save_new": ("contact_identified", None),
    "mautic.lead_post_save_update": ("contact_updated", None),
    "mautic.lead_points_change": ("mautic_points_change", None),
    "mautic.form_on_submit": ("form_submit", "submission"),
    "mautic.page_on_hit": ("page_view", "hit"),
    "mautic.email_on_open": ("email_open", "stat"),
}
# Mautic contact fields (API names) -> leadrouter attribute names.
FIELD_ATTRIBUTES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "position": "job_title",
    "country": "country",
    "city": "city",
}


def normalise(payload: Any) -> Normalised:
    """Each payload of a known trigger becomes a lead event; other triggers are ignored."""
    if not isinstance(payload, dict):
        raise Unusable("Mautic sends an object keyed by trigger")
    out = Normalised()
    for trigger, items in payload.items():
        if trigger not in TRIGGERS:
            out.ignored.extend(["other"] * (len(items) if isinstance(items, list) else 1))
            continue
        for item in items if isinstance(items, list) else [items]:
            try:
                out.events.append((trigger, _event(trigger, item)))
            except Unusable as exc:
                out.unusable.append((trigger, item, str(exc)))
    return out


def _event(trigger: str, item: Any) -> Any:
    if not isinstance(item, dict):
        raise Unusable("a payload item is not an object")
    activity_type, holder_key = TRIGGERS[trigger]
    holder = item.get(holder_key) if holder_key else item
    if not isinstance(holder, dict):
        raise Unusable(f"no {holder_key} object")
    contact = holder.get("contact") or holder.get("lead")
    if not isinstance(contact, dict) or contact.get("id") is None:
        raise Unusable("no contact with an id")
    core = (contact.get("fields") or {}).get("core") or {}
    value = lambda name: (core.get(name) or {}).get("value")  # noqa: E731 - tiny accessor
    properties: dict[str, Any] = {}
    if trigger == "mautic.form_on_submit":
        form = holder.get("form") or {}
        properties = {"form": form.get("alias") or form.get("name"), "url": holder.get("referer")}
    elif trigger == "mautic.page_on_hit":
        properties = {"url": holder.get("url"), "title": holder.get("urlTitle")}
    elif trigger == "mautic.email_on_open":
        properties = {"email": (holder.get("email") or {}).get("name")}
    elif trigger == "mautic.lead_points_change":
        properties = {k: v for k, v in (item.get("points") or {}).items()}
    timestamp = item.get("timestamp")
    return lead_event(
        SOURCE,
        [trigger, str(contact["id"]), str(holder.get("id", "")), str(timestamp)],
        email=value("email"),
        external_ids={"mautic": str(contact["id"])},
        attributes={attr: value(name) for name, attr in FIELD_ATTRIBUTES.items()},
        activity_type=activity_type,
        occurred_at=parse_time(timestamp),
        properties={k: v for k, v in properties.items() if v is not None},
    )
