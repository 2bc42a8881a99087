"""The RELEASED contract (contracts/asyncapi.v1.json), what subscribers validate against, covers
every event the services publish and every writer's dead letters (issue 27)."""

import json
from pathlib import Path

from shared.asyncapi import DEAD_LETTER, TOPICS, example_event, message_name
from tests.contract import contract_errors, dead_letter_errors

RELEASED = json.loads(
    (Path(__file__).resolve().parents[2] / "contracts" / "asyncapi.v1.json").read_text()
)


def test_every_event_type_the_services_publish_is_in_the_released_contract() -> None:
    channels = {c["address"]: c for c in RELEASED["channels"].values()}
    for topic in TOPICS:
        channel = channels[f"{{namespace}}.{topic.name}.v1"]
        for event_type in topic.types:
            assert message_name(event_type) in channel["messages"], event_type
            event = example_event(topic, event_type)
            errors = contract_errors(
                RELEASED, f"ns.{topic.name}.v1", event.to_bytes(), event.subject
            )
            assert errors == [], errors


def test_the_released_contract_says_ingest_writes_dead_letters() -> None:
    operations = [
        o
        for o in RELEASED["operations"].values()
        if o["action"] == "send" and o["channel"]["$ref"] == "#/channels/leadEventsDlq"
    ]
    assert any("ingest" in o["summary"] for o in operations)


# The headers each writer puts on a dead letter (shared/consumer.py, shared/outbox.py,
# services/ingest/service.py); the integration tests read real ones through the same check.
CONSUMER = {
    "leadrouter-error": "undecodable",
    "leadrouter-consumer": "scoring",
    "leadrouter-original-topic": "leadrouter.lead-events.v1",
    "leadrouter-original-partition": "2",
    "leadrouter-original-offset": "41",
}
OUTBOX = {
    "content-type": "application/cloudevents+json",
    "leadrouter-error": "MessageSizeTooLargeError",
    "leadrouter-original-topic": "leadrouter.handoffs.v1",
    "leadrouter-outbox-relay": "handoff",
    "leadrouter-outbox-id": "17",
    "leadrouter-value-omitted": "2000000 bytes, kept in the outbox",
}
INGEST = {
    "leadrouter-error": "no messageId",
    "leadrouter-original-topic": "leadrouter.lead-events.v1",
    "leadrouter-source": "segment",
}


def test_dead_letters_of_every_writer_match_the_one_dead_letter_message() -> None:
    assert DEAD_LETTER in RELEASED["components"]["messages"]
    for headers in (CONSUMER, OUTBOX, INGEST):
        assert dead_letter_errors(RELEASED, headers) == [], headers
    # A dead letter that says neither why nor who set it aside does not.
    assert dead_letter_errors(RELEASED, {"leadrouter-error": "x"})
    nobody = {k: v for k, v in INGEST.items() if k != "leadrouter-source"}
    assert dead_letter_errors(RELEASED, nobody)
