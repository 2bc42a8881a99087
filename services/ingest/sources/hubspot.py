"""HubSpot webhook subscriptions (webhooks API v3 payloads): a JSON array of events."""

from typing import Any

from services.ingest import auth
from services.ingest.sources import (
    Ignored,
    Normalised,
    SignedRequest,
    Unusable,
    collect,
    epoch_ms_time,
    erasure_request,
    lead_event,
    make_touch,
)
from shared.events import CloudEvent, Touch
from shared.settings import IngestSettings

NAME = "hubspot"
SECRET_SETTING = "hubspot_client_secret"
SIGNATURE = "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp"
EXAMPLE: Any = [
    {
        "eventId": 1001,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1795424400000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 123,
        "changeSource": "CRM",
        "propertyName": "jobtitle",
        "propertyValue": "VP Sales",
    }
]

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
# Contact properties that say where the contact came from -> (touch field, original source).
# HubSpot's source (hs_analytics_source, hs_latest_source) is its channel, e.g. PAID_SEARCH,
# taken as the medium (lower case); drill-down 1 names the campaign (or referrer, or search
# engine), drill-down 2 the keyword or detail. A webhook event carries one property at a time.
TOUCH_PROPERTIES = {
    "hs_analytics_source": ("medium", True),
    "hs_analytics_source_data_1": ("campaign", True),
    "hs_analytics_source_data_2": ("term", True),
    "hs_latest_source": ("medium", False),
    "hs_latest_source_data_1": ("campaign", False),
    "hs_latest_source_data_2": ("term", False),
    # UTM values kept in contact properties (hidden form fields) under their own names.
    **{
        f"utm_{name}": (name, False) for name in ("source", "medium", "campaign", "term", "content")
    },
}
ACTIVITY_BY_TYPE = {
    "contact.creation": "contact_created",
    "contact.propertyChange": "property_change",
}
PRIVACY_DELETION = "contact.privacyDeletion"  # GDPR delete in HubSpot: erase here too
IGNORED_KINDS = {
    "contact.deletion",
    "contact.privacyDeletion",
    "contact.merge",
    "contact.associationChange",
    "contact.restore",
}


def verify(secret: str, request: SignedRequest) -> None:
    """Signature v3 over method, URL, body and timestamp; old timestamps are replays."""
    auth.verify_hubspot(
        secret,
        request.method,
        request.url,
        request.body,
        request.headers.get("x-hubspot-signature-v3"),
        request.headers.get("x-hubspot-request-timestamp"),
        now_ms=request.now_ms,
        max_age_s=request.max_age_s,
    )


def normalise(payload: Any, settings: IngestSettings | None = None) -> Normalised:
    """HubSpot sends a non-empty array of events; each contact event becomes a lead event."""
    if not isinstance(payload, list) or not payload:
        raise Unusable("HubSpot sends a non-empty JSON array of event objects")
    return collect(((_kind(item), item) for item in payload), _event)


def _type(item: Any) -> Any:
    # The v3 payloads name it subscriptionType; the webhooks overview's example eventType.
    if not isinstance(item, dict):
        return None
    return item.get("subscriptionType") or item.get("eventType")


def _kind(item: Any) -> str:
    kind = _type(item)
    known = kind in ACTIVITY_BY_TYPE or kind in IGNORED_KINDS or kind == PRIVACY_DELETION
    return kind if known else "other"


def _erasure(item: dict[str, Any]) -> CloudEvent:
    for required in ("eventId", "objectId", "occurredAt"):
        if item.get(required) in (None, ""):
            raise Unusable(f"no {required}")
    return erasure_request(
        NAME,
        [str(item["eventId"]), str(item["objectId"])],
        email=None,
        external_ids={"hubspot": str(item["objectId"])},
        occurred_at=epoch_ms_time(item["occurredAt"]),
    )


def _event(label: str, item: Any) -> CloudEvent:
    kind = _type(item)
    if kind is None:
        raise Unusable("no subscriptionType (or eventType)")
    if kind == PRIVACY_DELETION:
        return _erasure(item)
    if kind not in ACTIVITY_BY_TYPE:
        raise Ignored()  # company.*, deal.*, deletions: nothing to score
    for required in ("eventId", "objectId", "occurredAt"):
        if item.get(required) in (None, ""):
            raise Unusable(f"no {required}")
    attributes: dict[str, Any] = {}
    email = None
    properties: dict[str, Any] = {}
    name = None
    touch = None
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
        touch = property_touch(str(name), value)
    # HubSpot documents eventId as not unique: two changes in one batch may share it.
    # A retry keeps every part below (only attemptNumber changes), so it still dedups.
    distinct = [str(item["eventId"]), kind, str(item["objectId"]), str(item["occurredAt"])]
    return lead_event(
        NAME,
        [*distinct, str(name or "")],
        email=email,
        external_ids={"hubspot": str(item["objectId"])},
        attributes=attributes,
        activity_type=ACTIVITY_BY_TYPE[kind],
        occurred_at=epoch_ms_time(item["occurredAt"]),
        properties=properties,
        touch=touch,
    )


def property_touch(name: str, value: Any) -> Touch | None:
    """The touch a source property's new value gives, or None for other properties."""
    if name not in TOUCH_PROPERTIES or not isinstance(value, str):
        return None
    field, original = TOUCH_PROPERTIES[name]
    return make_touch({field: value.lower() if field == "medium" else value}, original=original)
