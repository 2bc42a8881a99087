"""The one consumer loop and the outbox relay against the real Kafka and PostgreSQL."""

import asyncio
import json
import logging

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import OperationalError

from shared import metrics, outbox
from shared.consumer import TransactionalConsumer
from shared.db import consumer_offsets, make_engine, make_sessionmaker, processed_events
from shared.db import outbox as outbox_table
from shared.errors import Invalid
from shared.events import LeadActivityData
from shared.kafka import LEAD_EVENTS, dlq, ensure_topics, make_producer
from shared.outbox import OutboxPublishFailed, OutboxRelay, parked_rows
from shared.runtime import Runtime
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


def make_consumer(settings, sessions, handler, **options):
    """The test consumer of the lead-events topic; `options` override its settings."""
    return TransactionalConsumer(
        **{
            "name": "test",
            "group_id": "test-group",
            "topics": [settings.topic(LEAD_EVENTS)],
            "bootstrap": settings.kafka_bootstrap,
            "sessions": sessions,
            "handler": handler,
            "relay": "test-dlq",
            "poll_timeout_ms": 100,
            "max_retries": 1,
            **options,
        }
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


async def test_the_backlog_is_counted_once_per_interval_while_rows_flow(
    settings, sessions, producer
):
    topic = settings.topic("lead-events")
    async with sessions() as s, s.begin():
        events = [activity_event("counted@acme.example", "page_view", i) for i in range(5)]
        await outbox.add_events(s, "counted", topic, events)
    relay = OutboxRelay("counted", sessions, producer, batch_max=2, observe_every_s=3600)
    backlog = metrics.OUTBOX_BACKLOG.labels("counted")
    assert await relay.publish_once() == 2
    assert backlog._value.get() == 3  # the first pass counts
    assert await relay.publish_once() == 2
    assert backlog._value.get() == 3  # within the interval: deleted, not counted again
    relay._observed_at -= 3600  # the interval has passed
    assert await relay.publish_once() == 1
    assert backlog._value.get() == 0


async def _eq(value, expected) -> bool:
    return (await value) == expected


async def test_a_record_the_broker_refuses_is_parked_and_the_rows_behind_it_go_on(
    settings, sessions, producer
):
    topic = settings.topic(LEAD_EVENTS)
    before = [activity_event(f"before{i}@acme.example", "page_view", i) for i in range(3)]
    huge = activity_event("huge@acme.example", "page_view", 10)
    huge.data["attributes"]["notes"] = "x" * 1_100_000  # over the producer's 1 MiB limit
    after = [activity_event(f"after{i}@acme.example", "page_view", i) for i in range(3)]
    # A later row of the same key as the parked one is published, not held back.
    same_key = activity_event("huge@acme.example", "page_view", 11)
    async with sessions() as s, s.begin():
        await outbox.add_events(s, "scoring", topic, [*before, huge, *after, same_key])
    relay = OutboxRelay("scoring", sessions, producer, max_attempts=3, observe_every_s=0)
    published = [await relay.publish_once() for _ in range(4)]
    assert published == [7, 0, 0, 1]  # 7 at once; the third refusal parks it; then its DLQ copy

    records = await read_topic(settings.kafka_bootstrap, topic, 7)
    by_key = {r.key.decode(): json.loads(r.value)["id"] for r in records}
    assert len(records) == 7
    assert by_key == {e.subject: e.id for e in [*before, *after, same_key]}
    (dead,) = await read_topic(settings.kafka_bootstrap, dlq(topic), 1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.value == b""
    assert headers["leadrouter-error"].startswith("MessageSizeTooLargeError")
    assert headers["leadrouter-original-topic"] == topic
    assert headers["leadrouter-value-omitted"].endswith("bytes, kept in the outbox")
    async with sessions() as s:
        (parked,) = await parked_rows(s, "scoring")
    assert (parked.topic, parked.key, parked.attempts) == (topic, huge.subject, 3)
    assert parked.size_bytes > 1_100_000
    assert metrics.OUTBOX_PARKED.labels("scoring")._value.get() == 1
    assert metrics.OUTBOX_BACKLOG.labels("scoring")._value.get() == 0


class UnreachableBroker:
    """A producer whose broker does not answer: every send fails as aiokafka's would."""

    def __init__(self) -> None:
        self.sends = 0

    async def send(self, topic, value, key, headers):
        self.sends += 1
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")


async def test_a_broker_outage_blocks_and_retries_quietly_and_readiness_degrades(
    settings, sessions, caplog
):
    topic = settings.topic(LEAD_EVENTS)
    events = [activity_event(f"wait{i}@acme.example", "page_view", i) for i in range(3)]
    async with sessions() as s, s.begin():
        await outbox.add_events(s, "blocked", topic, events)
    broker = UnreachableBroker()
    relay = OutboxRelay("blocked", sessions, broker, backoff_max_s=0.05, summary_every_s=3600)
    runtime = Runtime(settings.model_copy(update={"outbox_stuck_after_s": 0.3}), "blocked")
    runtime.relay = relay
    caplog.set_level(logging.INFO, logger="shared.outbox")
    with pytest.raises(OutboxPublishFailed):
        await relay.publish_once()
    assert broker.sends == 1  # the rest of the batch does not each wait for a timeout
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _true(broker.sends >= 20), 20, "20 tries")
        await asyncio.sleep(0.4)
        degraded = runtime.degradation()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert degraded is not None and "outbox relay blocked has not published" in degraded
    assert "KafkaConnectionError" in degraded
    async with sessions() as s:
        left = await s.scalar(
            select(func.count()).where(
                outbox_table.c.relay == "blocked", outbox_table.c.parked_at.is_(None)
            )
        )
    assert left == 3  # transient: nothing parked, nothing skipped
    lines = [r for r in caplog.records if r.name == "shared.outbox"]
    assert len(lines) == 1  # one line when the failure starts, not one per retry
    assert lines[0].exc_info is None


async def _true(value: bool) -> bool:
    return value


async def test_errors_retrying_cannot_fix_are_dead_lettered_at_once(settings, sessions, producer):
    topic = settings.topic(LEAD_EVENTS)
    refused = activity_event("refused@acme.example", "page_view", 1)
    malformed = activity_event("malformed@acme.example", "page_view", 2)
    good = activity_event("good@acme.example", "page_view", 3)
    for event in (refused, malformed, good):
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    calls: dict[str, int] = {}

    async def handler(session, batch):
        for d in batch:
            calls[d.event.subject] = calls.get(d.event.subject, 0) + 1
            if d.event == refused:
                raise Invalid("a domain refusal")
            if d.event == malformed:
                LeadActivityData.model_validate({"identity": {}})  # raises ValidationError

    consumer = make_consumer(settings, sessions, handler, max_retries=5)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _eq(stored_total(sessions), 3), what="all offsets stored")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
    # At most once in a batch and once alone: no retries with backoff.
    assert calls[refused.subject] <= 2
    assert calls[malformed.subject] <= 2
    async with sessions() as s:
        reasons = sorted(
            row["leadrouter-error"].split(":")[0]
            for row in await s.scalars(
                select(outbox_table.c.headers).where(outbox_table.c.relay == "test-dlq")
            )
        )
    assert reasons == ["Invalid", "ValidationError"]


async def test_lag_is_end_minus_stored_offsets_and_grows_while_processing_is_stuck(
    settings, sessions, producer
):
    topic = settings.topic(LEAD_EVENTS)
    stuck = asyncio.Event()

    async def handler(session, batch):
        stuck.set()
        await asyncio.Event().wait()  # processing hangs (a lock, a database that never answers)

    first = [activity_event(f"lag{i}@acme.example", "page_view", i) for i in range(10)]
    for event in first:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()
    maintaining = asyncio.create_task(consumer.maintain(lag_interval_s=0.2))

    def lag() -> float:
        return sum(
            metrics.CONSUMER_LAG.labels("test", topic, str(p))._value.get() for p in range(3)
        )

    running: asyncio.Task | None = None
    try:
        # Present before the loop ever ran (right after start).
        await eventually(lambda: _true(lag() == 10), 20, "lag of 10 before processing")
        running = asyncio.create_task(consumer.run())
        await asyncio.wait_for(stuck.wait(), 30)
        second = [activity_event(f"lag{i}@acme.example", "page_view", i) for i in range(10, 40)]
        for event in second:
            await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
        await eventually(lambda: _true(lag() == 40), 20, "lag of 40 while stuck")
    finally:
        tasks = [t for t in (maintaining, running) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()


async def test_processed_ids_are_pruned_after_the_window_only_behind_committed_offsets(
    settings, sessions
):
    topic = settings.topic(LEAD_EVENTS)
    async with sessions() as s, s.begin():
        await s.execute(
            insert(consumer_offsets).values(
                consumer_group="test-group", topic=topic, partition=0, next_offset=100
            )
        )
        old = text("now() - interval '8 days'")
        rows = [
            ("old-committed", old, 5),  # past the window and behind the stored offset: pruned
            ("old-uncommitted", old, 150),  # offsets rewound below it: could come again
            ("recent", text("now() - interval '1 hour'"), 6),  # inside the window
        ]
        for event_id, at, offset in rows:
            await s.execute(
                insert(processed_events).values(
                    consumer_group="test-group",
                    event_id=event_id,
                    processed_at=at,
                    topic=topic,
                    partition=0,
                    kafka_offset=offset,
                )
            )
        await s.execute(
            insert(processed_events).values(
                consumer_group="other-group", event_id="old-committed", processed_at=old
            )
        )
    consumer = make_consumer(settings, sessions, None)
    assert await consumer.prune_processed_ids(7 * 24 * 3600, batch=1) == 1
    async with sessions() as s:
        left = sorted(
            (r.consumer_group, r.event_id)
            for r in await s.execute(
                select(processed_events.c.consumer_group, processed_events.c.event_id)
            )
        )
    assert left == [
        ("other-group", "old-committed"),
        ("test-group", "old-uncommitted"),
        ("test-group", "recent"),
    ]


async def test_a_database_outage_is_logged_once_not_once_per_retry(
    settings, sessions, producer, caplog
):
    topic = settings.topic(LEAD_EVENTS)
    event = activity_event("outage@acme.example", "page_view", 1)
    await producer.send_and_wait(topic, event.to_bytes(), key=event.subject.encode())
    failures = 6

    async def handler(session, batch):
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("select 1", {}, ConnectionRefusedError("postgres is down"))

    caplog.set_level(logging.INFO, logger="shared.consumer")
    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _eq(stored_total(sessions), 1), what="the event committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
    lines = [r.getMessage() for r in caplog.records if "database" in r.getMessage()]
    assert len(lines) == 2, lines  # when it started, and when it ended
    assert "failing" in lines[0] and "working again" in lines[1]
    assert all(r.exc_info is None for r in caplog.records if r.name == "shared.consumer")


async def test_a_batch_whose_partition_was_revoked_meanwhile_is_not_dead_lettered(
    settings, sessions
):
    """A rebalance took the partition while its batch committed: the batch stands, no DLQ.

    (Found by the chaos run: `seek` on a revoked partition raised IllegalStateError, the
    committed batch was retried as if it had failed, then sent to the DLQ.)
    """
    await ensure_topics(settings)
    event = activity_event("ana@acme.example", "page_view")
    revoked = TopicPartition(settings.topic(LEAD_EVENTS), 0)
    record = ConsumerRecord(
        revoked.topic, 0, 41, 0, 0, b"email:ana@acme.example", event.to_bytes(), None, 0, 0, ()
    )

    async def handler(session, batch):
        await outbox.add_event(session, "projection", "none", batch[0].event)

    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()  # subscribed, but no partition assigned: as after a revocation
    try:
        await consumer.process(revoked, [record])
    finally:
        await consumer.stop()
    async with sessions() as s:
        relays = (await s.scalars(select(outbox_table.c.relay))).all()
        stored = await s.scalar(select(consumer_offsets.c.next_offset))
    assert relays == ["projection"]  # processed once, nothing for the DLQ relay
    assert stored == 42


async def test_a_failure_while_postgres_is_down_does_not_skip_the_batch_in_hand(
    settings, sessions, producer
):
    """The loop fails mid-batch and the stored offsets cannot be read yet (Postgres restarting):
    it must not poll on from the fetch position, which is already past the failed batch.

    (Found by the chaos run: a batch of 100 events was skipped during a Postgres restart.)
    """
    topic = settings.topic(LEAD_EVENTS)
    events = [activity_event(f"lead{i}@acme.example", "page_view", i) for i in range(6)]
    for event in events[:3]:
        await producer.send_and_wait(topic, event.to_bytes(), key=b"one-partition", partition=0)
    seen: list[str] = []

    async def handler(session, batch):
        seen.extend(d.event.id for d in batch)

    # standalone: no rebalance may rewind it by chance
    consumer = make_consumer(settings, sessions, handler, max_retries=3, standalone=True)
    process, seek_to_stored = consumer.process, consumer.seek_to_stored
    failures = {"process": 1, "seek": 1}

    async def failing_process(tp, records):
        if failures["process"]:
            failures["process"] -= 1
            raise OSError("connection refused (as while Postgres restarts)")
        await process(tp, records)

    async def failing_seek(partitions):
        if failures["seek"] and not failures["process"]:  # only the seek after the failure
            failures["seek"] -= 1
            raise OSError("connection refused (as while Postgres restarts)")
        await seek_to_stored(partitions)

    consumer.process, consumer.seek_to_stored = failing_process, failing_seek
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _true(not failures["seek"]), what="the failed seek")
        for event in events[3:]:
            await producer.send_and_wait(topic, event.to_bytes(), key=b"one-partition", partition=0)
        await eventually(lambda: _true(len(seen) >= 6), 30, "every event handled")
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
    assert sorted(seen) == sorted(e.id for e in events)


async def test_a_poison_record_read_again_is_dead_lettered_once(settings, sessions):
    """A rebalance can seek a partition back to its stored offset while a dead letter is
    committing, so the poison record comes round again: it must not reach the DLQ twice."""
    tp = TopicPartition(settings.topic(LEAD_EVENTS), 0)
    poison = activity_event("poison@acme.example", "page_view", 1)
    record = ConsumerRecord(
        tp.topic, 0, 7, 0, 0, b"email:poison@acme.example", poison.to_bytes(), None, 0, 0, ()
    )

    async def handler(session, batch):
        raise Invalid("a domain refusal")

    consumer = make_consumer(settings, sessions, handler)
    await consumer.start()  # subscribed, no partition assigned: process() works on its own
    try:
        await consumer.process(tp, [record])
        await consumer.process(tp, [record])  # read again, as after the seek back
    finally:
        await consumer.stop()
    async with sessions() as s:
        dead = await s.scalar(
            select(func.count()).select_from(outbox_table).where(outbox_table.c.relay == "test-dlq")
        )
    assert dead == 1
