"""Checks records read from leadrouter's topics against the AsyncAPI contract.

`tests.helpers.read_topic` runs every record the integration and end-to-end tests read
through `contract_errors`, so an event the code publishes cannot drift from its schema.
"""

import json
from collections import Counter
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.asyncapi import TOPIC_VERSION, TOPICS, Topic, message_name
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
        return []  # a dead letter is the original bytes, whatever they were
    if headers is not None and headers.get("content-type") != CONTENT_TYPE:
        return [f"content-type header {headers.get('content-type')!r}, not {CONTENT_TYPE}"]
    try:
        event = json.loads(value)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    event_type = event.get("type") if isinstance(event, dict) else None
    if event_type not in topic.types:
        return [f"type {event_type!r} is not in the contract of {topic.name}"]
    message = document["components"]["messages"][message_name(event_type)]
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
