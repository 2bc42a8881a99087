"""The one consumer loop and the outbox relay against the real Kafka and PostgreSQL."""

import asyncio
import json

import pytest
from sqlalchemy import func, select

from shared import outbox
from shared.consumer import TransactionalConsumer
from shared.db import consumer_offsets, make_engine, make_sessionmaker
from shared.db import outbox as outbox_table
from shared.kafka import LEAD_EVENTS, dlq, ensure_topics, make_producer
from shared.outbox import OutboxRelay
from tests.helpers import activity_event, eventually, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=5)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def producer(settings):
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


def make_consumer(settings, sessions, handler):
    return TransactionalConsumer(
        name="test",
        group_id="test-group",
        topics=[settings.topic(LEAD_EVENTS)],
        bootstrap=settings.kafka_bootstrap,
        sessions=sessions,
        handler=handler,
        relay="test-dlq",
        poll_timeout_ms=100,
        max_retries=1,
    )


async def stored_total(sessions) -> int:
    async with sessions() as s:
        return int(
            await s.scalar(select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)))
        )


async def test_each_event_lands_once_and_poison_goes_to_the_dlq(settings, sessions, producer):
    topic = settings.topic(LEAD_EVENTS)
    events = [activity_event(f"lead{i % 5}@acme.example", "page_view", i) for i in range(20)]
    poison = activity_event("poison@acme.example", "page_view", 99)
    for event in events:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    await producer.send_and_wait(topic, events[3].to_bytes(), key=events[3].subject.encode())
    await producer.send_and_wait(topic, b"{not json", key=b"email:junk@acme.example")
    await producer.send_and_wait(topic, poison.to_bytes(), key=poison.subject.encode())
    total_records = len(events) + 3

    async def handler(session, batch):
        for d in batch:
            if d.event.subject == "email:poison@acme.example":
                raise ValueError("this event always fails")
            # The projection write: a row in the same transaction as the offsets.
            await outbox.add_event(session, "projection", "none", d.event)

    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(
            lambda: _eq(stored_total(sessions), total_records), what="all offsets stored"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()

    async with sessions() as s:
        projected = list(
            await s.scalars(
                select(outbox_table.c.value).where(outbox_table.c.relay == "projection")
            )
        )
        dead = await s.scalar(select(func.count()).where(outbox_table.c.relay == "test-dlq"))
    ids = [json.loads(v)["id"] for v in projected]
    assert sorted(ids) == sorted(e.id for e in events)  # the duplicate was absorbed
    assert dead == 2  # the undecodable record and the failing one

    relay = OutboxRelay("test-dlq", sessions, producer, idle_poll_s=0.1)
    assert await relay.publish_once() == 2
    dead_letters = await read_topic(settings.kafka_bootstrap, dlq(topic), 2)
    reasons = sorted(dict(r.headers)["leadrouter-error"].decode() for r in dead_letters)
    assert reasons[0].startswith("ValueError: this event always fails")
    assert reasons[1].startswith("undecodable")
    assert {r.value for r in dead_letters} == {b"{not json", poison.to_bytes()}


async def test_a_restarted_consumer_resumes_at_the_stored_offsets(settings, sessions, producer):
    topic = settings.topic(LEAD_EVENTS)
    handled: list[str] = []

    async def handler(session, batch):
        handled.extend(d.event.id for d in batch)

    first = [activity_event(f"a{i}@acme.example", "page_view", i) for i in range(9)]
    for event in first:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: _eq(stored_total(sessions), 9), what="first offsets")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()

    second = [activity_event(f"b{i}@acme.example", "page_view", i) for i in range(6)]
    for event in second:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: _eq(stored_total(sessions), 15), what="second offsets")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()
    assert sorted(handled) == sorted(e.id for e in first + second)


async def test_relay_publishes_in_order_and_empties_the_outbox(settings, sessions, producer):
    topic = settings.topic("lead-events")  # activity events belong there
    events = [activity_event("ordered@acme.example", "page_view", i) for i in range(50)]
    async with sessions() as s, s.begin():
        for event in events:
            await outbox.add_event(s, "ordered", topic, event)
    relay = OutboxRelay("ordered", sessions, producer, batch_max=20)
    published = [await relay.publish_once() for _ in range(4)]
    assert published == [20, 20, 10, 0]
    records = await read_topic(settings.kafka_bootstrap, topic, 50)
    assert [json.loads(r.value)["id"] for r in records] == [e.id for e in events]
    assert {r.key for r in records} == {b"email:ordered@acme.example"}


async def _eq(value, expected) -> bool:
    return (await value) == expected
