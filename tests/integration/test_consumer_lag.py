"""Consumer lag against the real Kafka: transactions' commit markers are not lag."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import select

from shared import metrics
from shared.consumer import TransactionalConsumer
from shared.db import consumer_offsets, make_engine, make_sessionmaker
from shared.kafka import LEAD_EVENTS, ensure_topics
from tests.helpers import activity_event, eventually

pytestmark = pytest.mark.integration

NAME = "lag-test"


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=5)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def publish_in_transactions(settings, events, per_transaction: int) -> None:
    """Publish as ingest does: each group of events in one Kafka transaction."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"lag-test-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        topic = settings.topic(LEAD_EVENTS)
        for start in range(0, len(events), per_transaction):
            async with producer.transaction():
                for event in events[start : start + per_transaction]:
                    await producer.send(topic, event.to_bytes(), key=event.subject.encode())
    finally:
        await producer.stop()


def lag(topic: str, partitions: int) -> float:
    return sum(
        metrics.CONSUMER_LAG.labels(NAME, topic, str(p))._value.get() for p in range(partitions)
    )


async def test_an_idle_caught_up_consumer_reads_a_lag_of_zero_after_transactions(
    settings, sessions
) -> None:
    topic = settings.topic(LEAD_EVENTS)
    handled: list[str] = []

    async def handler(session, batch):
        handled.extend(d.event.id for d in batch)

    consumer = TransactionalConsumer(
        name=NAME,
        group_id="lag-test-group",
        topics=[topic],
        bootstrap=settings.kafka_bootstrap,
        sessions=sessions,
        handler=handler,
        relay="lag-test",
        poll_timeout_ms=100,
    )
    first = [activity_event(f"idle{i}@acme.example", "page_view", i) for i in range(12)]
    await publish_in_transactions(settings, first, per_transaction=4)
    await consumer.start()
    tasks = [
        asyncio.create_task(consumer.run()),
        asyncio.create_task(consumer.maintain(lag_interval_s=0.2)),
    ]
    try:
        await eventually(lambda: _true(len(handled) == 12), 30, "the first 12 processed")
        # Each transaction left a commit marker after its records; caught up, nothing is lag.
        await eventually(lambda: _true(lag(topic, 3) == 0), 20, "a lag of 0 when idle")
        ends = await consumer.consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
        async with sessions() as session:
            stored = {
                r.partition: r.next_offset
                for r in await session.execute(
                    select(consumer_offsets).where(
                        consumer_offsets.c.consumer_group == "lag-test-group"
                    )
                )
            }
        assert stored == {tp.partition: end for tp, end in ends.items() if end > 0}

        # Stored past the markers, nothing after them is skipped: more records all arrive.
        second = [activity_event(f"idle{i}@acme.example", "page_view", i) for i in range(12, 20)]
        await publish_in_transactions(settings, second, per_transaction=3)
        await eventually(lambda: _true(len(handled) == 20), 30, "the next 8 processed")
        assert sorted(handled) == sorted(e.id for e in first + second)
        await eventually(lambda: _true(lag(topic, 3) == 0), 20, "a lag of 0 again")
    finally:
        consumer.request_stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
