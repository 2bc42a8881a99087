"""The event contract: an AsyncAPI 3.0 document built from the pydantic models the code uses.

Nothing here is written twice: channels come from the topic constants, message types from
the type catalogue in shared/events.py, payload schemas from the data models, and every
example is built through those models (so an example that no longer validates fails at once).
`python -m shared.asyncapi` prints the document; `--markdown` prints docs/asyncapi.md.
"""

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from pydantic import BaseModel

from shared.events import (
    CONTENT_TYPE,
    ERASURE_REQUESTED,
    FEEDBACK_ACTIONS,
    FEEDBACK_PREFIX,
    HANDOFF_KINDS,
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    LIFECYCLE_PREFIX,
    LIFECYCLE_TRANSITIONS,
    Activity,
    CloudEvent,
    ExplanationLine,
    FeedbackData,
    HandoffData,
    Identity,
    LeadActivityData,
    LifecycleData,
    derived_event_id,
)
from shared.kafka import HANDOFFS, LEAD_EVENTS, LEAD_LIFECYCLE, SALES_FEEDBACK, dlq

# The contract's version: the major is the topics' `.v1`; a breaking change needs new topics.
CONTRACT_VERSION = "1.0.0"
TOPIC_VERSION = "v1"
SCHEMA_REF = "#/components/schemas/{model}"
DEAD_LETTER = "dead_letter"

EXAMPLE_TIME = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EXAMPLE_LEAD = "email:ana@acme.example"


@dataclass(frozen=True)
class Topic:
    """One topic of the contract: who writes it, who reads it, and the types it carries."""

    name: str
    title: str
    description: str
    data_model: type[BaseModel]
    types: tuple[str, ...]
    example: Callable[[str], BaseModel]
    written_by: str
    read_by: str
    # Who produces the records: a reader of leadrouter's topics breaks when a field goes; a
    # writer (sales tools on sales-feedback) breaks when a field becomes required.
    leadrouter_writes: bool = True


def _explanation() -> list[ExplanationLine]:
    return [
        ExplanationLine(rule="behaviour: demo_request", points=40),
        ExplanationLine(rule="fit: company_size >= 200", points=20),
        ExplanationLine(rule="behaviour: pricing_page_view", points=10),
    ]


def _activity_example(event_type: str) -> BaseModel:
    return LeadActivityData(
        identity=Identity(email="ana@acme.example", external_ids={"hubspot": "123"}),
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        activity=Activity(type="demo_request", occurred_at=EXAMPLE_TIME, properties={}),
    )


def _lifecycle_example(event_type: str) -> BaseModel:
    transition = event_type.removeprefix(LIFECYCLE_PREFIX)
    stage = {
        "became_lead": "lead",
        "disqualified": "disqualified",
        "recycled": "recycled",
        "became_sql": "sql",
        "became_opportunity": "opportunity",
        "became_customer": "customer",
    }.get(transition, "mql")
    return LifecycleData(
        transition=transition,
        lead_key=EXAMPLE_LEAD,
        email="ana@acme.example",
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        stage=stage,
        previous_stage="lead" if transition == "became_mql" else "mql",
        score=70,
        fit_score=20.0,
        behaviour_score=50.0,
        tier="hot",
        previous_tier="warm" if transition == "tier_changed" else None,
        explanation=_explanation(),
        qualifying_activity_at=EXAMPLE_TIME,
    )


def _handoff_example(event_type: str) -> BaseModel:
    kind = event_type.removeprefix(HANDOFF_PREFIX)
    status = {
        "queued": "queued",
        "accepted": "accepted",
        "contacted": "contacted",
        "rejected": "rejected",
        "recycled": "rejected",
        "converted": "converted",
    }.get(kind, "assigned")
    queued = kind == "queued"
    return HandoffData(
        handoff_id="6b0d2c4e-8f0a-5d3e-9c51-2f7a4b8e1d10",
        status=status,
        lead_key=EXAMPLE_LEAD,
        rep_id=None if queued else "rep-ben",
        rep_name=None if queued else "Ben Okafor",
        team="sales",
        email="ana@acme.example",
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        score=70,
        stage="mql",
        explanation=_explanation(),
        routing_reason="rule everyone_else: no eligible rep in sales; queued"
        if queued
        else "rule everyone_else -> team sales: fair rotation chose Ben Okafor "
        "(12 earlier handoffs, weight 1) among 3 eligible rep(s)",
        reason="not_a_fit" if kind in {"rejected", "recycled"} else None,
        converted_to="sql" if kind == "converted" else None,
        tier="hot",
        queue="sales-queue" if queued else None,
        previous_rep_id="rep-chen" if kind == "reassigned" else None,
        accept_by=None if queued else EXAMPLE_TIME + timedelta(minutes=5),
        contact_by=None if queued else EXAMPLE_TIME + timedelta(minutes=15),
        qualifying_activity_at=EXAMPLE_TIME,
    )


def _feedback_example(event_type: str) -> BaseModel:
    action = event_type.removeprefix(FEEDBACK_PREFIX)
    return FeedbackData(
        handoff_id="6b0d2c4e-8f0a-5d3e-9c51-2f7a4b8e1d10",
        rep_id="rep-ben",
        reason="not_a_fit" if action == "reject" else None,
        converted_to="sql" if action == "convert" else None,
    )


# One line per event type: when it is written (the message summaries in the document).
WHEN = {
    LEAD_ACTIVITY: "A lead did something (a form, a page view, a demo request, ...).",
    "leadrouter.lifecycle.became_lead": "A person is known for the first time.",
    "leadrouter.lifecycle.became_mql": "The score reached the MQL threshold: sales gets the lead.",
    "leadrouter.lifecycle.tier_changed": "The lead moved between hot, warm and cold.",
    "leadrouter.lifecycle.score_below_threshold": "An MQL's score fell below the threshold.",
    "leadrouter.lifecycle.disqualified": "A fit rule disqualified the lead (never routed).",
    "leadrouter.lifecycle.recycled": "Sales handed the lead back to marketing.",
    "leadrouter.lifecycle.became_sql": "Sales converted the lead to sales-qualified.",
    "leadrouter.lifecycle.became_opportunity": "Sales opened a deal for the lead.",
    "leadrouter.lifecycle.became_customer": "The deal closed.",
    "leadrouter.lifecycle.merged": "Records turned out to be one person: `merged_keys` now "
    "live under `lead_key` (count them once).",
    "leadrouter.lifecycle.erased": "The lead's personal data was erased: erase `lead_key` too "
    "(no email, attributes or explanation; stage erased, score 0).",
    "leadrouter.lead.erasure_requested": "A platform asked to erase a person (Segment delete, "
    "HubSpot privacy deletion): `identity` names them.",
    "leadrouter.handoff.assigned": "A rep got the lead; the accept and contact clocks run.",
    "leadrouter.handoff.queued": "Nobody could take the lead; it waits in the team's queue.",
    "leadrouter.handoff.sla_warning": "Most of the accept time is gone and nobody accepted yet.",
    "leadrouter.handoff.sla_breached": "An accept or first-contact deadline passed.",
    "leadrouter.handoff.reassigned": "After a breach, another rep got the lead (or a manager's "
    "queue: `status` escalated, `rep_id` null).",
    "leadrouter.handoff.accepted": "The rep accepted; the first-contact clock runs.",
    "leadrouter.handoff.contacted": "The rep contacted the lead; the SLA clocks stop.",
    "leadrouter.handoff.rejected": "The rep rejected the lead, with a reason code.",
    "leadrouter.handoff.recycled": "After a rejection, the lead goes back to marketing.",
    "leadrouter.handoff.converted": "The lead became an SQL, an opportunity or a customer.",
    "leadrouter.feedback.accept": "A sales tool says the rep accepted the handoff.",
    "leadrouter.feedback.contact": "A sales tool says the rep contacted the lead.",
    "leadrouter.feedback.reject": "A sales tool says the rep rejected the lead (`reason`).",
    "leadrouter.feedback.convert": "A sales tool says the lead converted (`converted_to`).",
}

ORDERING = (
    "Records are keyed by the lead key (the CloudEvents `subject`, e.g. "
    "`email:ana@acme.example`), so one lead's events stay in one partition and in the order "
    "they were written; there is no order between different leads. Delivery is at least "
    "once: every event has a unique, deterministic `id`, so drop an id you have already seen."
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        name=LEAD_EVENTS,
        title="Lead activity",
        description="What leads did, normalised from every marketing platform into one shape.",
        data_model=LeadActivityData,
        types=(LEAD_ACTIVITY, ERASURE_REQUESTED),
        example=_activity_example,
        written_by="ingest",
        read_by="scoring",
    ),
    Topic(
        name=LEAD_LIFECYCLE,
        title="Lead lifecycle",
        description="Lifecycle transitions of a lead, with its profile, scores and explanation "
        "in full (readers need no lookup).",
        data_model=LifecycleData,
        types=tuple(LIFECYCLE_PREFIX + t for t in LIFECYCLE_TRANSITIONS),
        example=_lifecycle_example,
        written_by="scoring (through its outbox)",
        read_by="handoff",
    ),
    Topic(
        name=HANDOFFS,
        title="Handoffs to sales",
        description="Every step of a lead's handoff to sales: routing, SLA warnings and "
        "breaches, reassignment, and the feedback sales gave. Sales tools subscribe here.",
        data_model=HandoffData,
        types=tuple(HANDOFF_PREFIX + k for k in HANDOFF_KINDS),
        example=_handoff_example,
        written_by="handoff (through its outbox)",
        read_by="scoring (recycled, converted) and sales tools",
    ),
    Topic(
        name=SALES_FEEDBACK,
        title="Sales feedback",
        description="What sales tools tell leadrouter about a handoff (the same as the "
        "`POST /v1/handoffs/{id}/<action>` endpoints).",
        data_model=FeedbackData,
        types=tuple(FEEDBACK_PREFIX + a for a in FEEDBACK_ACTIONS),
        example=_feedback_example,
        written_by="sales tools",
        read_by="handoff",
        leadrouter_writes=False,
    ),
)


def message_name(event_type: str) -> str:
    """The message's key in the document: the type without the `leadrouter.` prefix."""
    return event_type.removeprefix("leadrouter.")


def example_event(topic: Topic, event_type: str) -> CloudEvent:
    """A complete example event of a type, built through its data model."""
    return CloudEvent(
        id=derived_event_id("example", event_type),
        source=f"leadrouter/{topic.written_by.split()[0]}" if topic.leadrouter_writes else "crm",
        type=event_type,
        time=EXAMPLE_TIME,
        subject=EXAMPLE_LEAD,
        data=topic.example(event_type).model_dump(mode="json"),
    )


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

    --- dead letters of every writer (tracking, issue 27) ---
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
# --- end of dead letters of every writer ---


KAFKA_KEY = {
    "bindings": {
        "kafka": {
            "key": {"type": "string", "description": "The lead key, equal to `subject`"},
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
        "traits": [{"$ref": "#/components/messageTraits/leadKeyed"}],
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
            "messageTraits": {"leadKeyed": KAFKA_KEY, "deadLetterKeyed": DEAD_LETTER_KEY},
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


# -- validating events against the contract ------------------------------------------------


def topic_of(address: str) -> Topic | None:
    """The contract's topic of a concrete topic name (any namespace), None for a DLQ."""
    for topic in TOPICS:
        if address.endswith(f".{topic.name}.{TOPIC_VERSION}"):
            return topic
    return None


# -- breaking changes between two released documents ----------------------------------------


def breaking_changes(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What in `current` would break a tool written against `released` (empty: compatible).

    On topics leadrouter writes, readers break when a message, a field or a guaranteed
    field goes, or a field takes a type it did not have. On topics tools write, writers
    break when a field becomes required or stops accepting a type.
    """
    problems: list[str] = []
    for channel_id, channel in released["channels"].items():
        now = current["channels"].get(channel_id)
        if now is None or now["address"] != channel["address"]:
            problems.append(f"channel {channel['address']} removed or renamed")
            continue
        for name in channel["messages"]:
            if name not in now["messages"]:
                problems.append(f"{channel['address']}: message {name} removed")
    tools_write = {
        message_name(t) for topic in TOPICS if not topic.leadrouter_writes for t in topic.types
    }
    for name, message in released["components"]["messages"].items():
        new = current["components"]["messages"].get(name)
        if new is None:
            problems.append(f"message {name} removed")
            continue
        old_schema = _Resolver(released).payload(message)
        new_schema = _Resolver(current).payload(new)
        if name in tools_write:
            problems += [f"{name}: {p}" for p in _writer_breaks(old_schema, new_schema, "")]
        else:
            problems += [f"{name}: {p}" for p in _reader_breaks(old_schema, new_schema, "")]
    return problems


class _Resolver:
    """Flattens a message payload (allOf of envelope and data, refs) into one plain schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._schemas = document["components"]["schemas"]

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.flat(message.get("payload", {}))

    def flat(self, schema: Any) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        if "$ref" in schema:
            return self.flat(self._schemas[schema["$ref"].rsplit("/", 1)[-1]])
        out = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema.get("allOf", []):
            part = self.flat(part)
            out["properties"] = {**out.get("properties", {}), **part.get("properties", {})}
            out["required"] = sorted({*out.get("required", []), *part.get("required", [])})
            if "type" in part:
                out["type"] = part["type"]
        if "properties" in out:
            out["properties"] = {k: self.flat(v) for k, v in out["properties"].items()}
        if "items" in out:
            out["items"] = self.flat(out["items"])
        if "anyOf" in out:
            out["anyOf"] = [self.flat(s) for s in out["anyOf"]]
        return out


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits (empty: any)."""
    if "anyOf" in schema:
        branches = [_types(s) for s in schema["anyOf"]]
        return set() if any(not b for b in branches) else set().union(*branches)
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else set()
    types = {kind} if isinstance(kind, str) else set(kind)
    return types | ({"number"} if "integer" in types else set())


def _object_branch(schema: dict[str, Any]) -> dict[str, Any]:
    for branch in [schema, *schema.get("anyOf", [])]:
        if "properties" in branch:
            return branch
    return {}


def _reader_breaks(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    old_types, new_types = _types(old), _types(new)
    if old_types and (not new_types or not new_types <= old_types):
        yield f"{path or '/'} may now be {sorted(new_types - old_types) or 'anything'}"
    if "const" in old and new.get("const") != old["const"]:
        yield f"{path or '/'} is no longer {old['const']!r}"
    old_obj, new_obj = _object_branch(old), _object_branch(new)
    for name, field in old_obj.get("properties", {}).items():
        at = f"{path}/{name}"
        if name not in new_obj.get("properties", {}):
            yield f"{at} removed"
            continue
        if name in old_obj.get("required", []) and name not in new_obj.get("required", []):
            yield f"{at} no longer always present"
        yield from _reader_breaks(field, new_obj["properties"][name], at)
    if "items" in old and "items" in new:
        yield from _reader_breaks(old["items"], new["items"], f"{path}/*")


def _writer_breaks(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    old_types, new_types = _types(old), _types(new)
    if new_types and (not old_types or not old_types <= new_types):
        yield f"{path or '/'} no longer accepts {sorted(old_types - new_types) or 'anything'}"
    old_obj, new_obj = _object_branch(old), _object_branch(new)
    for name in set(new_obj.get("required", [])) - set(old_obj.get("required", [])):
        yield f"{path}/{name} is now required"
    for name, field in new_obj.get("properties", {}).items():
        if name in old_obj.get("properties", {}):
            yield from _writer_breaks(old_obj["properties"][name], field, f"{path}/{name}")


# -- the rendered reference ----------------------------------------------------------------


def render_markdown(document: dict[str, Any]) -> str:
    """docs/asyncapi.md: every channel, every message type with its fields and an example."""
    schemas = document["components"]["schemas"]
    messages = document["components"]["messages"]
    info = document["info"]
    out = [
        "# leadrouter event contract",
        "",
        f"Generated from `shared/asyncapi.py` (AsyncAPI {document['asyncapi']}, contract "
        f"{info['version']}); do not edit by hand: `python -m shared.asyncapi --markdown > "
        "docs/asyncapi.md`. The machine-readable document is served by every service at "
        "`GET /asyncapi.json`; the released one is `contracts/asyncapi.v1.json`.",
        "",
        info["description"],
        "",
        "Kafka record: key = the lead key; value = the event; header `content-type: "
        f"{CONTENT_TYPE}`.",
        "",
        "## The envelope",
        "",
        *_fields_table(schemas["CloudEvent"], schemas),
        "",
    ]
    for channel in document["channels"].values():
        out += [f"## `{channel['address']}`: {channel['title']}", "", channel["description"], ""]
        for name in channel["messages"]:
            message = messages[name]
            out += [f"### `{message['name']}`", "", message["summary"], ""]
            if "description" in message:
                out += [message["description"], ""]
            if name == DEAD_LETTER:
                out += _fields_table(message["headers"], schemas, "header") + [""]
                continue
            data_ref = message["payload"]["allOf"][1]["properties"]["data"]["$ref"]
            model = data_ref.rsplit("/", 1)[-1]
            if name == next(iter(channel["messages"])):
                out += [f"`data` ({model}):", "", *_fields_table(schemas[model], schemas), ""]
            else:
                out += [f"`data`: {model}, as above.", ""]
            example = message["examples"][0]["payload"]
            out += ["```json", json.dumps(example, indent=2), "```", ""]
    return "\n".join(out)


def _fields_table(
    schema: dict[str, Any], schemas: dict[str, Any], what: str = "field"
) -> list[str]:
    rows = [f"| {what} | type | required | meaning |", "| --- | --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        meaning = field.get("description", "").replace("\n", " ")
        rows.append(
            f"| `{name}` | {_type_name(field)} | {'yes' if name in required else ''} | {meaning} |"
        )
    return rows


def _type_name(field: dict[str, Any]) -> str:
    if "$ref" in field:
        return field["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in field:
        return " or ".join(_type_name(f) for f in field["anyOf"])
    if "const" in field:
        return f"`{field['const']}`"
    kind = field.get("type", "any")
    if kind == "array":
        return f"array of {_type_name(field.get('items', {}))}"
    return f"{kind} ({field['format']})" if "format" in field else str(kind)


def main(argv: list[str] | None = None) -> None:
    """Print the document (JSON) or its rendered reference (Markdown)."""
    parser = argparse.ArgumentParser(prog="python -m shared.asyncapi", description=main.__doc__)
    parser.add_argument("--markdown", action="store_true", help="print docs/asyncapi.md")
    args = parser.parse_args(argv)
    document = default_document()
    if args.markdown:
        sys.stdout.write(render_markdown(document))
    else:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
