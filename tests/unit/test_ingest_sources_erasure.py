"""Platforms' erasure requests become one leadrouter erasure request each (pure mapping)."""

from services.ingest.sources import hubspot, segment
from shared.events import ERASURE_REQUESTED, LeadActivityData


def test_a_segment_delete_message_asks_to_erase_every_id_it_names():
    out = segment.normalise(
        {
            "type": "delete",
            "messageId": "del-1",
            "userId": "u-1",
            "anonymousId": "a-1",
            "context": {"traits": {"email": "Ana@Acme.example"}},
            "timestamp": "2026-11-23T10:00:00Z",
        }
    )
    ((kind, event),) = out.events
    assert kind == "delete" and event.type == ERASURE_REQUESTED
    identity = LeadActivityData.model_validate(event.data).identity
    assert identity.email == "ana@acme.example"
    assert identity.external_ids == {"segment_user": "u-1", "segment_anonymous": "a-1"}
    assert event.subject == "email:ana@acme.example"


def test_a_segment_delete_without_any_id_goes_to_the_dlq():
    out = segment.normalise({"type": "delete", "messageId": "d", "timestamp": "2026-11-23"})
    assert out.events == [] and out.unusable[0][2].startswith("an erasure request without")


def test_a_hubspot_privacy_deletion_asks_to_erase_the_contact():
    out = hubspot.normalise(
        [
            {
                "eventId": 77,
                "objectId": 123,
                "occurredAt": 1795424400000,
                "subscriptionType": "contact.privacyDeletion",
            },
            {
                "eventId": 78,
                "objectId": 124,
                "occurredAt": 1795424400000,
                "subscriptionType": "contact.deletion",
            },
        ]
    )
    ((kind, event),) = out.events
    assert kind == "contact.privacyDeletion" and event.type == ERASURE_REQUESTED
    assert event.subject == "hubspot:123"
    assert out.ignored == ["contact.deletion"]  # an ordinary delete keeps the lead's history
