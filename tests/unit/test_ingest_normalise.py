import pytest
from pydantic import ValidationError

from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.events import LEAD_ACTIVITY, CloudEvent, LeadActivityData

RAW = {
    "id": "web-1",
    "identity": {"email": " Ana@Acme.Example "},
    "attributes": {"company": "Acme"},
    "activity": {"type": "demo_request", "occurred_at": "2026-11-23T09:30:00+01:00"},
}


def test_native_event_becomes_a_cloud_event_keyed_by_the_normalised_email():
    event = native_to_cloud_event(NativeLeadEvent.model_validate(RAW), "api")
    assert event.subject == "email:ana@acme.example"
    assert event.type == LEAD_ACTIVITY
    assert event.time.isoformat() == "2026-11-23T09:30:00+01:00"
    assert CloudEvent.from_bytes(event.to_bytes()) == event


def test_the_same_source_id_gives_the_same_event_id():
    a = native_to_cloud_event(NativeLeadEvent.model_validate(RAW), "api")
    b = native_to_cloud_event(NativeLeadEvent.model_validate(RAW), "api")
    other = native_to_cloud_event(NativeLeadEvent.model_validate({**RAW, "id": "web-2"}), "api")
    assert a.id == b.id != other.id


def test_external_id_is_the_key_without_email():
    raw = {**RAW, "identity": {"external_ids": {"hubspot": "123"}}}
    assert (
        native_to_cloud_event(NativeLeadEvent.model_validate(raw), "api").subject == "hubspot:123"
    )


def test_an_event_without_identity_is_refused():
    with pytest.raises(ValidationError, match="email or at least one external id"):
        NativeLeadEvent.model_validate({**RAW, "identity": {}})


@pytest.mark.parametrize(
    "raw",
    [
        RAW,
        {**RAW, "id": None, "identity": {"external_ids": {"hubspot": "1", "crm": "x"}}},
        {
            **RAW,
            "attributes": {"company_size": 250, "tags": ["a", {"b": None}], "score": 1.5},
            "activity": {
                "type": "page_view",
                "occurred_at": "2026-11-23T09:30:00.123456Z",
                "properties": {"url": "https://acme.example/pricing?plan=pro", "é": "ü"},
            },
        },
    ],
)
def test_the_event_built_without_revalidation_is_the_event_validation_would_build(raw):
    # native_to_cloud_event skips validating parts NativeLeadEvent already validated: what it
    # publishes must be byte for byte what validating the same envelope gives.
    event = native_to_cloud_event(NativeLeadEvent.model_validate(raw), "api")
    validated = CloudEvent.model_validate(
        {**event.model_dump(), "data": LeadActivityData.model_validate(event.data).model_dump()}
    )
    assert event.to_bytes() == validated.to_bytes()
    assert CloudEvent.from_bytes(event.to_bytes()).to_bytes() == event.to_bytes()
