"""Poison written straight onto every consumed topic, between good events, with the real services.

Undecodable bytes, valid CloudEvents of a type the service does not handle, and events of a
handled type whose data fails validation: each lands in its topic's DLQ exactly once, and
every partition moves on to the good events behind it.
"""

import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.handoff.app import build_app as build_handoff
from services.scoring.app import build_app as build_scoring
from shared.db import consumer_offsets, make_engine, make_sessionmaker, outbox
from shared.events import FEEDBACK_PREFIX, HANDOFF_PREFIX, LEAD_ACTIVITY, CloudEvent
from shared.kafka import (
    HANDOFFS,
    LEAD_EVENTS,
    LEAD_LIFECYCLE,
    SALES_FEEDBACK,
    dlq,
    ensure_topics,
    make_producer,
)
from tests.helpers import T0, activity_event, eventually, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 3


def event(type_: str, subject: str, data: dict) -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()), source="tests", type=type_, time=T0, subject=subject, data=data
    )


def poison_for(topic: str, subject: str, n: int) -> list[tuple[str, bytes]]:
    """Three kinds of poison for a topic, each tagged with what it is."""
    invalid: dict[str, tuple[str, dict[str, Any]]] = {
        LEAD_EVENTS: (LEAD_ACTIVITY, {"identity": {}, "activity": {"type": "page_view"}}),
        HANDOFFS: (HANDOFF_PREFIX + "recycled", {"lead_key": 42}),
        LEAD_LIFECYCLE: ("leadrouter.lifecycle.became_mql", {"transition": "became_mql"}),
        SALES_FEEDBACK: (FEEDBACK_PREFIX + "accept", {"rep_id": "r1"}),
    }
    handled_type, bad_data = invalid[topic]
    return [
        ("undecodable", b"\xff\xfe{not json " + str(n).encode()),
        ("unknown type", event("com.example.unknown.v9", subject, {"n": n}).to_bytes()),
        ("invalid data", event(handled_type, subject, bad_data).to_bytes()),
    ]


def good_for(topic: str, n: int) -> CloudEvent:
    """An event the service processes without error."""
    if topic == LEAD_EVENTS:
        return activity_event(f"good{n}@acme.example", "page_view", n)
    if topic == HANDOFFS:  # a handoff status scoring has no use for: processed, ignored
        return event(HANDOFF_PREFIX + "accepted", f"email:good{n}@acme.example", {"n": n})
    if topic == LEAD_LIFECYCLE:  # a transition handoff records in the funnel without routing
        return event(
            "leadrouter.lifecycle.tier_changed",
            f"email:good{n}@acme.example",
            {
                "transition": "tier_changed",
                "lead_key": f"email:good{n}@acme.example",
                "stage": "lead",
                "score": 10,
            },
        )
    # Feedback for an unknown handoff is refused by the domain, counted and logged: not poison.
    return event(FEEDBACK_PREFIX + "accept", f"email:good{n}@acme.example", {"handoff_id": "h?"})


async def test_poison_on_every_consumed_topic_lands_in_its_dlq_once_and_partitions_move(settings):
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    expected: dict[str, Counter[str]] = {}
    total: dict[str, int] = {}
    try:
        for short in (LEAD_EVENTS, HANDOFFS, LEAD_LIFECYCLE, SALES_FEEDBACK):
            topic = settings.topic(short)
            expected[topic] = Counter()
            total[topic] = 0
            for n in range(12):  # every partition gets poison between good events
                subject = f"email:lead{n}@acme.example"
                records = [good_for(short, n).to_bytes()]
                for kind, value in poison_for(short, subject, n):
                    records.append(value)
                    expected[topic][kind] += 1
                records.append(good_for(short, 100 + n).to_bytes())
                for value in records:
                    await producer.send_and_wait(topic, value, key=subject.encode())
                total[topic] += len(records)
    finally:
        await producer.stop()

    scoring, handoff = build_scoring(settings), build_handoff(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)

    async def stored(topic: str) -> int:
        async with sessions() as s:
            return int(
                await s.scalar(
                    select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)).where(
                        consumer_offsets.c.topic == topic
                    )
                )
            )

    async def no_dead_letter_waits() -> bool:
        async with sessions() as s:
            waiting = await s.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.topic.endswith(".dlq"))
            )
        return waiting == 0

    async def all_consumed() -> bool:
        # The services publish too (lifecycle, handoffs), so "done" is: stored = end offsets.
        return all(
            [
                n <= await stored(t) == await _end(settings.kafka_bootstrap, t)
                for t, n in total.items()
            ]
        )

    try:
        async with (
            scoring.router.lifespan_context(scoring),
            handoff.router.lifespan_context(handoff),
        ):
            await eventually(all_consumed, 120, "every partition past its poison")
            dead = {
                topic: await read_topic(settings.kafka_bootstrap, dlq(topic), 36, 60)
                for topic in total
            }
            # Dead letters go out through the outbox, whose relay deletes a row once Kafka has
            # acknowledged it: with none left, a second copy of any would be in the topic now.
            await eventually(no_dead_letter_waits, 60, "every dead letter out of the outbox")
            again = {topic: await _end(settings.kafka_bootstrap, dlq(topic)) for topic in total}
    finally:
        await engine.dispose()

    for topic, records in dead.items():
        headers = [dict(r.headers) for r in records]
        offsets = [
            (h["leadrouter-original-partition"], h["leadrouter-original-offset"]) for h in headers
        ]
        assert len(offsets) == len(set(offsets)) == 36, topic  # each once
        assert again[topic] == 36, topic
        kinds = Counter(_kind(r) for r in records)
        assert kinds == expected[topic], (topic, kinds)


def _kind(record) -> str:
    reason = dict(record.headers)["leadrouter-error"].decode()
    if reason.startswith("undecodable"):
        return "undecodable"
    if "ValidationError" in reason:
        return "invalid data"
    if "does not handle events of type" in reason:
        return "unknown type"
    return reason


async def _end(bootstrap: str, topic: str) -> int:
    """Records ever written to a topic (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()
