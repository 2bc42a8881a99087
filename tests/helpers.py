"""Small helpers shared by integration and end-to-end tests."""

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer

from harness.events import lead_activity
from harness.processes import (
    Service,
    eventually,  # noqa: F401 - the tests import it from here
)
from shared.asyncapi import default_document
from shared.events import CONTENT_TYPE, CloudEvent
from shared.kafka import client_options, ensure_topics, make_producer
from shared.settings import Settings
from tests.contract import contract_errors

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def minutes_ago(minutes: float) -> str:
    """An occurred_at `minutes` before now, for events sent to running services: their reads
    decay scores to the wall clock, so a fixed date would lower the scores a test expects as
    the days pass (a 50-point lead reads 49 about ten hours later)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def activity_event(email: str, kind: str, n: int = 0, event_id: str | None = None) -> CloudEvent:
    """A lead activity event as ingest would publish it, `n` seconds after T0."""
    at = T0 + timedelta(seconds=n)
    return lead_activity(f"email:{email}", kind, at, email, event_id=event_id)


async def publish(settings: Any, topic: str, events: list[CloudEvent]) -> None:
    """Publish events to a leadrouter topic (short name, e.g. "lead-events"), keyed by subject."""
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        for event in events:
            # with the header the contract documents, as leadrouter's writers send it
            await producer.send_and_wait(
                settings.topic(topic),
                event.to_bytes(),
                key=event.subject.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()


async def read_topic(
    kafka: Settings | str,
    topic: str,
    expected: int,
    timeout_s: float = 60,
    match: Callable[[Any], bool] = lambda record: True,
) -> list[Any]:
    """Read from the start of a topic, as a sales tool would, until `expected` records match.

    Every record read is checked against the AsyncAPI contract: a test fails on an event that
    does not match its published schema. `kafka`: the test's settings (their TLS/SASL options
    apply), or a plaintext bootstrap.
    """
    options = {"bootstrap_servers": kafka} if isinstance(kafka, str) else client_options(kafka)
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        isolation_level="read_committed",  # as consumers read: never an aborted request
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while sum(map(match, records)) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    for record in records:
        headers = {k: v.decode() for k, v in record.headers or ()}
        key = record.key.decode() if record.key is not None else None
        errors = contract_errors(default_document(), topic, record.value, key, headers)
        assert not errors, (
            f"{topic}@{record.partition}:{record.offset} breaks the contract: {errors}"
        )
    return [r for r in records if match(r)]


async def start_all(services: Iterable[Service]) -> None:
    """Start services side by side: their imports use the CPU, but their waits for Kafka and
    their consumer groups overlap (three one after the other took ~3x one)."""
    await asyncio.gather(*(service.start() for service in services))
