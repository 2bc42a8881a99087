"""Checks records read from leadrouter's topics against the AsyncAPI contract.

`tests.helpers.read_topic` runs every record the integration and end-to-end tests read
through `contract_errors`, so an event the code publishes cannot drift from its schema.
"""

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.asyncapi import DEAD_LETTER, TOPIC_VERSION, TOPICS, Topic, message_name
from shared.events import CONTENT_TYPE

# Event types seen valid in this test run (the contract test reports which ones were covered).
SEEN: Counter[str] = Counter()


def topic_of(name: str) -> Topic | None:
    """The contract's topic of a concrete topic name in any namespace; None for a DLQ."""
    return next((t for t in TOPICS if name.endswith(f".{t.name}.{TOPIC_VERSION}")), None)


def contract_errors(
    document: dict[str, Any],
    topic_name: str,
    value: bytes,
    key: str | None,
    headers: dict[str, str] | None = None,
) -> list[str]:
    """Why a record read from a topic breaks the contract (empty when it conforms)."""
    topic = topic_of(topic_name)
    if topic is None:
        # A dead letter's value is the original bytes, whatever they were; its headers say why
        # and who set it aside, as the contract's one dead_letter message says for every writer.
        return dead_letter_errors(document, headers) if headers is not None else []
    if headers is not None and headers.get("content-type") != CONTENT_TYPE:
        return [f"content-type header {headers.get('content-type')!r}, not {CONTENT_TYPE}"]
    try:
        event = json.loads(value)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    event_type = event.get("type") if isinstance(event, dict) else None
    if event_type not in topic.types:
        return [f"type {event_type!r} is not in the contract of {topic.name}"]
    message = document["components"]["messages"].get(message_name(event_type))
    if message is None:
        return [f"type {event_type!r} has no message in this contract document"]
    schema = {**message["payload"], "components": {"schemas": document["components"]["schemas"]}}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [
        f"{event_type} /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(event)
    ]
    if key != event.get("subject"):
        errors.append(
            f"{event_type}: Kafka key {key!r} is not the subject {event.get('subject')!r}"
        )
    if not errors:
        SEEN[event_type] += 1
    return errors


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the event types it saw to the controller, which reports."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["contract_seen"] = dict(SEEN)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's controller: add a finished worker's event types to the run's."""
    SEEN.update(getattr(node, "workeroutput", {}).get("contract_seen", {}))


def dead_letter_errors(document: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """Why a dead letter's headers break the contract's `dead_letter` message (empty: they fit)."""
    schema = document["components"]["messages"][DEAD_LETTER]["headers"]
    validator = Draft202012Validator(schema)
    return [f"dead letter headers {headers}: {e.message}" for e in validator.iter_errors(headers)]


async def namespace_errors(
    settings: Any, document: dict[str, Any], main_topics: bool = True
) -> list[str]:
    """Every record on every topic of the settings' namespace checked against `document`, read
    with a plain consumer from the start: the topics a test's services wrote, whatever the test
    itself read. `main_topics=False`: dead letters only (a test that writes poison on purpose)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.kafka import client_options

    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    errors: list[str] = []
    try:
        prefix = settings.topic_namespace + "."
        topics = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        if not main_topics:
            topics = [t for t in topics if topic_of(t) is None]
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            described = await admin.describe_topics(topics) if topics else []
        finally:
            await admin.close()
        partitions = [
            TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        left = {tp for tp in partitions if ends[tp] > 0}
        deadline = asyncio.get_running_loop().time() + 30
        while left and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            if not batch:
                left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
                continue
            for tp, records in batch.items():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    key = record.key.decode(errors="replace") if record.key is not None else None
                    errors += [
                        f"{tp.topic}@{tp.partition}:{record.offset}: {e}"
                        for e in contract_errors(document, tp.topic, record.value, key, headers)
                    ]
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    if left:
        errors.append(f"could not read to the end of {sorted(tp.topic for tp in left)} in 30 s")
    return errors


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which event types the run saw and validated against the contract, and which not."""
    if not SEEN:
        return
    every = [t for topic in TOPICS for t in topic.types]
    missing = [t for t in every if t not in SEEN]
    terminalreporter.write_line(
        f"event contract: {sum(SEEN.values())} events read by tests matched their schema; "
        f"types seen {len(SEEN)} of {len(every)}"
        + (f"; not seen: {', '.join(missing)}" if missing else "")
    )
