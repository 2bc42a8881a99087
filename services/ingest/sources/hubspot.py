"""HubSpot webhook subscriptions (webhooks API v3 payloads): a JSON array of events."""

from typing import Any

from services.ingest.sources import Normalised, Unusable, erasure_request, lead_event, parse_time

SOURCE = "hubspot"

# HubSpot contact properties -> leadrouter attribute names (others keep their HubSpot name).
PROPERTY_ATTRIBUTES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "jobtitle": "job_title",
    "country": "country",
    "industry": "industry",
    "numberofemployees": "company_size",
    "lifecyclestage": "hubspot_lifecycle_stage",
    "hs_lead_status": "hubspot_lead_status",
}
ACTIVITY_BY_TYPE = {
    "contact.creation": "contact_created",
    "contact.propertyChange": "property_change",
}
PRIVACY_DELETION = "contact.privacyDeletion"  # GDPR delete in HubSpot: erase here too
IGNORED_KINDS = {
    "contact.deletion",
    "contact.merge",
    "contact.associationChange",
    "contact.restore",
}


def normalise(payload: Any) -> Normalised:
    """HubSpot sends an array of events; each contact event becomes a lead event."""
    if not isinstance(payload, list):
        raise Unusable("HubSpot sends a JSON array of events")
    out = Normalised()
    for item in payload:
        kind = item.get("subscriptionType") if isinstance(item, dict) else None
        label = kind if kind in ACTIVITY_BY_TYPE or kind in IGNORED_KINDS else "other"
        if kind == PRIVACY_DELETION:
            label = kind
            try:
                out.events.append((label, _erasure(item)))
            except Unusable as exc:
                out.unusable.append((label, item, str(exc)))
            continue
        if kind not in ACTIVITY_BY_TYPE:
            if kind is None:
                out.unusable.append((label, item, "no subscriptionType"))
            else:
                out.ignored.append(label)  # company.*, deal.*, deletions: nothing to score
            continue
        try:
            out.events.append((label, _event(kind, item)))
        except Unusable as exc:
            out.unusable.append((label, item, str(exc)))
    return out


def _erasure(item: dict[str, Any]) -> Any:
    for required in ("eventId", "objectId", "occurredAt"):
        if item.get(required) in (None, ""):
            raise Unusable(f"no {required}")
    return erasure_request(
        SOURCE,
        [str(item["eventId"])],
        email=None,
        external_ids={"hubspot": str(item["objectId"])},
        occurred_at=parse_time(item["occurredAt"]),
    )


def _event(kind: str, item: dict[str, Any]) -> Any:
    for required in ("eventId", "objectId", "occurredAt"):
        if item.get(required) in (None, ""):
            raise Unusable(f"no {required}")
    attributes: dict[str, Any] = {}
    email = None
    properties: dict[str, Any] = {}
    if kind == "contact.propertyChange":
        name, value = item.get("propertyName"), item.get("propertyValue")
        if not name:
            raise Unusable("a propertyChange without propertyName")
        properties = {"property": name, "value": value}
        if name == "email":
            email = value
        else:
            attribute = PROPERTY_ATTRIBUTES.get(name, name)
            if attribute == "company_size" and isinstance(value, str) and value.isdigit():
                value = int(value)
            attributes[attribute] = value
    return lead_event(
        SOURCE,
        [str(item["eventId"])],
        email=email,
        external_ids={"hubspot": str(item["objectId"])},
        attributes=attributes,
        activity_type=ACTIVITY_BY_TYPE[kind],
        occurred_at=parse_time(item["occurredAt"]),
        properties=properties,
    )
