"""The AsyncAPI 3.0 document, built from the catalogue and the data models' JSON Schemas."""

from functools import cache
from typing import Any

from pydantic import BaseModel

from shared.asyncapi.topics import (
    CONTRACT_VERSION,
    ORDERING,
    TOPIC_VERSION,
    TOPICS,
    WHEN,
    Topic,
    example_event,
    message_name,
)
from shared.events import (
    CONTENT_TYPE,
    CloudEvent,
)
from shared.kafka import LEAD_EVENTS, dlq

SCHEMA_REF = "#/components/schemas/{model}"
DEAD_LETTER = "dead_letter"


def _schemas() -> dict[str, Any]:
    """Component schemas of the envelope and every data model, with refs into components."""
    schemas: dict[str, Any] = {}
    models: list[type[BaseModel]] = [CloudEvent, *(t.data_model for t in TOPICS)]
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMA_REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    envelope = schemas["CloudEvent"]
    envelope["description"] = (
        "A CloudEvents 1.0 event in structured JSON mode (`application/cloudevents+json`). "
        "`subject` is the lead key, `time` when it happened, `data` depends on `type`."
    )
    envelope["properties"]["time"]["description"] = "RFC 3339 with a time zone"
    return schemas


def _record_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "content-type": {
                "type": "string",
                "const": CONTENT_TYPE,
                "description": "CloudEvents structured mode: the whole event is the value",
            }
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    """Every writer's dead letters: a consumer's, an outbox relay's and ingest's (the door's).

    Each names why and the topic the record was for; then who set it aside: a consumer (with
    the record's partition and offset), an outbox relay (with its row) or ingest (an item of a
    request it could not use, with the source that sent it).
    """
    text = {"type": "string"}
    writers = {
        "consumer": [
            "leadrouter-consumer",
            "leadrouter-original-partition",
            "leadrouter-original-offset",
        ],
        "outbox relay": ["leadrouter-outbox-relay", "leadrouter-outbox-id"],
        "ingest": ["leadrouter-source"],
    }
    return {
        "type": "object",
        "required": ["leadrouter-error", "leadrouter-original-topic"],
        "properties": {
            "content-type": text,
            "leadrouter-error": {**text, "description": "Why the writer gave up on it"},
            "leadrouter-consumer": {**text, "description": "The consumer that gave up"},
            "leadrouter-original-topic": {**text, "description": "The topic it was for"},
            "leadrouter-original-partition": {**text, "pattern": "^[0-9]+$"},
            "leadrouter-original-offset": {**text, "pattern": "^[0-9]+$"},
            "leadrouter-outbox-relay": {**text, "description": "The relay that parked the row"},
            "leadrouter-outbox-id": {**text, "pattern": "^[0-9]+$"},
            "leadrouter-value-omitted": {
                **text,
                "description": "The value was too large for Kafka: it stays in the outbox",
            },
            "leadrouter-source": {
                **text,
                "description": "Ingest: the source (platform or API key) that sent the item",
            },
        },
        "anyOf": [{"title": writer, "required": names} for writer, names in writers.items()],
    }


DEAD_LETTER_KEY = {
    "bindings": {
        "kafka": {
            "key": {
                "type": "string",
                "description": "The original record's key (a lead key); for an item ingest "
                "could not use, the lead key if it names a person, else the source",
            },
            "bindingVersion": "0.5.0",
        }
    }
}


KAFKA_KEY = {
    "bindings": {
        "kafka": {
            "key": {"type": "string", "description": "The lead key, equal to `subject`"},
            "bindingVersion": "0.5.0",
        }
    }
}

GOAL_KEY = {
    "bindings": {
        "kafka": {
            "key": {"type": "string", "description": "`goal:<goal id>`, equal to `subject`"},
            "bindingVersion": "0.5.0",
        }
    }
}


def _message(topic: Topic, event_type: str) -> dict[str, Any]:
    example = example_event(topic, event_type).model_dump(mode="json")
    return {
        "name": event_type,
        "title": event_type,
        "summary": WHEN[event_type],
        "contentType": CONTENT_TYPE,
        "traits": [{"$ref": f"#/components/messageTraits/{topic.keyed_by}Keyed"}],
        "headers": _record_headers(),
        "payload": {
            "allOf": [
                {"$ref": SCHEMA_REF.format(model="CloudEvent")},
                {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {
                        "type": {"type": "string", "const": event_type},
                        "data": {"$ref": SCHEMA_REF.format(model=topic.data_model.__name__)},
                    },
                },
            ]
        },
        "examples": [
            {
                "name": message_name(event_type).replace(".", "-"),
                "headers": {"content-type": CONTENT_TYPE},
                "payload": example,
            }
        ],
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record a consumer could not decode or process after bounded retries, an "
        "outbox row the broker refused for good, or an item of a request ingest could not use.",
        "description": "The original record's key and value, unchanged (they may not even be "
        "JSON), with the reason and the origin in headers. Fix the cause, then re-publish the "
        "value to the original topic: event ids make that safe. Ingest's dead letters hold the "
        "item as the platform sent it (JSON), to normalise again once the cause is fixed.",
        "contentType": "application/octet-stream",
        "traits": [{"$ref": "#/components/messageTraits/deadLetterKeyed"}],
        "headers": _dead_letter_headers(),
        "payload": {"description": "The original record's value, byte for byte"},
    }


def asyncapi_document(
    namespace: str = "leadrouter", bootstrap: str = "127.0.0.1:9092"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic leadrouter reads or writes."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {DEAD_LETTER: _dead_letter_message()}
    parameters = {
        "namespace": {
            "default": namespace,
            "description": "LEADROUTER_TOPIC_NAMESPACE: lets several environments share a cluster",
        }
    }
    for topic in TOPICS:
        channel_id = _camel(topic.name)
        refs = {
            message_name(t): {"$ref": f"#/components/messages/{message_name(t)}"}
            for t in topic.types
        }
        for event_type in topic.types:
            messages[message_name(event_type)] = _message(topic, event_type)
        channels[channel_id] = {
            "address": f"{{namespace}}.{topic.name}.{TOPIC_VERSION}",
            "title": topic.title,
            "description": f"{topic.description}\n\nWritten by {topic.written_by}; read by "
            f"{topic.read_by}.\n\n{ORDERING}",
            "parameters": parameters,
            "messages": refs,
        }
        dlq_id = f"{channel_id}Dlq"
        channels[dlq_id] = {
            "address": dlq(f"{{namespace}}.{topic.name}.{TOPIC_VERSION}"),
            "title": f"{topic.title}: dead letters",
            "description": f"Records of `{topic.name}` that {topic.read_by.split()[0]} could "
            "not use, set aside so the partition moves on.",
            "parameters": parameters,
            "messages": {DEAD_LETTER: {"$ref": f"#/components/messages/{DEAD_LETTER}"}},
        }
        writer, reader = topic.written_by.split()[0], topic.read_by.split()[0]
        operations[f"{_camel(writer)}Sends{_pascal(topic.name)}"] = {
            "action": "send" if topic.leadrouter_writes else "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{topic.written_by} writes {topic.title.lower()}"
            if topic.leadrouter_writes
            else f"{reader} reads {topic.title.lower()} that {topic.written_by} write",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{n}"} for n in refs],
        }
        if topic.leadrouter_writes:
            operations[f"{_camel(reader)}Reads{_pascal(topic.name)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{topic.read_by} read {topic.title.lower()}",
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{n}"} for n in refs],
            }
        operations[f"deadLetter{_pascal(topic.name)}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dlq_id}"},
            "summary": f"{reader} sets aside what it cannot use",
            "messages": [{"$ref": f"#/channels/{dlq_id}/messages/{DEAD_LETTER}"}],
        }
        if topic.name == LEAD_EVENTS:  # the door dead-letters what a webhook sent but is unusable
            operations["ingestDeadLettersLeadEvents"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dlq_id}"},
                "summary": "ingest sets aside the items of a request it accepted but could not "
                "use (a webhook's or a Tracking API call's), with the source in headers",
                "messages": [{"$ref": f"#/channels/{dlq_id}/messages/{DEAD_LETTER}"}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "leadrouter events",
            "version": CONTRACT_VERSION,
            "description": "The topics leadrouter reads and writes. Every record is a "
            "CloudEvents 1.0 event in structured JSON mode. Within a topic version fields are "
            "only ever added; a breaking change gets a new topic (`.v2`).\n\n" + ORDERING,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": bootstrap,
                "protocol": "kafka",
                "description": "The Kafka cluster leadrouter runs on (LEADROUTER_KAFKA_BOOTSTRAP)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _schemas(),
            "messages": messages,
            "messageTraits": {
                "leadKeyed": KAFKA_KEY,
                "goalKeyed": GOAL_KEY,
                "deadLetterKeyed": DEAD_LETTER_KEY,
            },
        },
    }


@cache
def default_document() -> dict[str, Any]:
    """The document with default names (what contracts/ and docs/ hold)."""
    return asyncapi_document()


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(p.capitalize() for p in rest)


def _pascal(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("-"))
