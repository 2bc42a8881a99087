"""Group commit on a real Kafka: concurrent requests share one transaction, each is answered
only after the commit that holds its records, and a failed transaction fails every request
in it with nothing of any of them visible to read-committed consumers."""

import asyncio
import os
import signal
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.ingest.publisher import PublishFailed, Record, RequestPublisher
from shared.events import CONTENT_TYPE, CloudEvent
from shared.kafka import LEAD_EVENTS, ensure_topics, make_producer
from shared.settings import Settings
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()


def request_records(topic: str, prefix: str, count: int) -> list[Record]:
    """One request's records: `count` native events of lead <prefix>-<n>."""
    records = []
    for n in range(count):
        item = NativeLeadEvent.model_validate(
            {
                "id": f"{prefix}-{n}",
                "identity": {"email": f"{prefix}-{n}@group.example"},
                "activity": {"type": "page_view", "occurred_at": NOW},
            }
        )
        event = native_to_cloud_event(item, "api")
        records.append(
            Record(
                topic,
                event.to_bytes(),
                event.subject.encode(),
                [("content-type", CONTENT_TYPE.encode())],
            )
        )
    return records


def _transactions() -> tuple[float, float]:
    """(transactions, requests in them) so far, from ingest's group-commit histogram."""
    count = REGISTRY.get_sample_value("leadrouter_ingest_transaction_requests_count") or 0.0
    total = REGISTRY.get_sample_value("leadrouter_ingest_transaction_requests_sum") or 0.0
    return count, total


def _no_shared_producer() -> AIOKafkaProducer:
    raise AssertionError("the transactional path must not use the shared producer")


async def test_concurrent_requests_share_a_transaction_and_each_202_is_readable(
    settings: Settings,
):
    await ensure_topics(settings)
    topic = settings.topic(LEAD_EVENTS)
    publisher = RequestPublisher(settings, _no_shared_producer)
    await publisher.start()
    before = _transactions()
    try:
        await asyncio.gather(
            *(publisher.publish(request_records(topic, f"r{r}", 3)) for r in range(40))
        )
    finally:
        await publisher.stop()
    transactions, requests = (a - b for a, b in zip(_transactions(), before, strict=True))
    assert requests == 40
    # 40 requests arrived at once; four committers: they cannot all have gone alone.
    assert transactions < 40
    records = await read_topic(settings, topic, 120, timeout_s=30)
    subjects = {CloudEvent.from_bytes(r.value).subject for r in records}
    assert subjects == {f"email:r{r}-{n}@group.example" for r in range(40) for n in range(3)}
    assert all(r.timestamp > 0 for r in records)


async def test_the_publisher_puts_each_lead_on_the_partition_send_would(settings: Settings):
    # The publisher builds its own per-partition batches: a lead's events must still land
    # where every other producer (send(), the partitioner's default) puts that lead.
    await ensure_topics(settings)
    topic = settings.topic(LEAD_EVENTS)
    records = request_records(topic, "p", 30)
    publisher = RequestPublisher(settings, _no_shared_producer)
    await publisher.start()
    try:
        await publisher.publish(records)
    finally:
        await publisher.stop()
    producer = make_producer(settings)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic, record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()
    partitions: dict[bytes, set[int]] = {}
    for r in await read_topic(settings, topic, 60, timeout_s=30):
        partitions.setdefault(r.key, set()).add(r.partition)
    assert len(partitions) == 30
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert len(set().union(*partitions.values())) > 1  # 30 leads over 3 partitions


async def test_a_failed_transaction_fails_every_request_in_it_and_shows_none_of_them(
    settings: Settings,
):
    await ensure_topics(settings)
    topic = settings.topic(LEAD_EVENTS)
    # One committer, so the requests below are one group, all sent before the commit.
    settings = settings.model_copy(update={"ingest_kafka_producers": 1})
    publisher = RequestPublisher(settings, _no_shared_producer)
    await publisher.start()
    try:
        # Larger than a Kafka request may be: the producer refuses it inside the transaction.
        oversized = [Record(topic, b"x" * 2_000_000, b"big", [])]
        outcomes = await asyncio.gather(
            *(publisher.publish(request_records(topic, f"lost{r}", 5)) for r in range(3)),
            publisher.publish(oversized),
            *(publisher.publish(request_records(topic, f"lost{r}", 5)) for r in range(3, 6)),
            return_exceptions=True,
        )
        assert all(isinstance(o, PublishFailed) for o in outcomes), outcomes
        # The publisher goes on: the next request is a transaction of its own, committed.
        await publisher.publish(request_records(topic, "after", 2))
    finally:
        await publisher.stop()
    records = await read_topic(settings, topic, 2, timeout_s=30)
    subjects = [CloudEvent.from_bytes(r.value).subject for r in records]
    assert sorted(subjects) == ["email:after-0@group.example", "email:after-1@group.example"]


async def test_a_request_larger_than_the_group_limit_is_a_transaction_of_its_own(
    settings: Settings,
):
    await ensure_topics(settings)
    topic = settings.topic(LEAD_EVENTS)
    settings = settings.model_copy(
        update={"ingest_kafka_producers": 1, "ingest_transaction_max_records": 4}
    )
    publisher = RequestPublisher(settings, _no_shared_producer)
    await publisher.start()
    before = _transactions()
    try:
        await asyncio.gather(
            publisher.publish(request_records(topic, "big", 10)),
            publisher.publish(request_records(topic, "small", 2)),
        )
    finally:
        await publisher.stop()
    transactions, requests = (a - b for a, b in zip(_transactions(), before, strict=True))
    assert (transactions, requests) == (2, 2)
    records = await read_topic(settings, topic, 12, timeout_s=30)
    assert len(records) == 12


PAUSE_S = 20.0


# Requests that arrive while Kafka is paused wait for it and are acknowledged when it returns
# (the producer may be replaced meanwhile, when an abort cannot reach the broker: whether that
# happens depends on timing; the injected test below forces the replacement). The pausing
# test runs on its own broker (the `pausable_kafka` fixture, port
# LEADROUTER_TEST_PAUSABLE_KAFKA_PORT): the Kafka every other test uses is never paused.
@pytest.mark.xdist_group("pausable_kafka")
async def test_requests_waiting_when_kafka_returns_are_all_acknowledged(
    settings: Settings, pausable_kafka: tuple[str, int]
) -> None:
    bootstrap, pid = pausable_kafka
    settings = settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_publish_timeout_s": 15.0,
            "kafka_transactions": True,
        }
    )
    topic = settings.topic(LEAD_EVENTS)
    await ensure_topics(settings)
    publisher = RequestPublisher(settings, lambda: None)  # type: ignore[arg-type,return-value]
    await publisher.start()
    try:
        await publisher.publish(request_records(topic, "before", 5))
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering, as in a network partition
        try:
            # In flight when Kafka went away: times out, and its abort cannot reach the broker.
            lost = asyncio.create_task(publisher.publish(request_records(topic, "lost", 25)))
            await asyncio.sleep(PAUSE_S - 6)
            # Sixty requests arrive in the pause's last seconds and wait for Kafka.
            waiting = [
                asyncio.create_task(publisher.publish(request_records(topic, f"waiting{n}", 25)))
                for n in range(60)
            ]
            await asyncio.sleep(6)
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(PublishFailed):
            await lost
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        assert failed == [], f"{len(failed)} of 60 refused, e.g. {failed[:2]}"
    finally:
        await publisher.stop()
    records = await read_topic(
        bootstrap, topic, 60 * 25, timeout_s=60, match=lambda r: b"waiting" in r.value
    )
    assert len(records) == 60 * 25


async def test_a_producer_whose_bootstrap_saw_no_broker_is_replaced_before_a_request_uses_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a pause, a broker may answer a metadata request listing no broker (while
    it is fenced); aiokafka then ignores the answer, its start() goes on and fails with
    AssertionError('Did we not perform bootstrap?'). Injected here for the first producers on
    the shared Kafka: requests wait for a producer that did connect instead of failing."""
    settings = settings.model_copy(
        update={"kafka_publish_timeout_s": 15.0, "kafka_transactions": True}
    )
    topic = settings.topic(LEAD_EVENTS)
    await ensure_topics(settings)
    made = RequestPublisher._make
    unlucky = 3

    def make(publisher: RequestPublisher, slot: int):  # type: ignore[no-untyped-def]
        nonlocal unlucky
        producer = made(publisher, slot)
        if unlucky:
            unlucky -= 1
            # The answer listed no broker: aiokafka keeps an empty cluster and starts anyway.
            producer.client.cluster.update_metadata = lambda metadata: None
        return producer

    monkeypatch.setattr(RequestPublisher, "_make", make)
    publisher = RequestPublisher(
        settings.model_copy(update={"ingest_kafka_producers": 1}),
        lambda: None,  # type: ignore[arg-type,return-value]
    )
    await publisher.start(warm_up_s=1.0)
    try:
        outcomes = await asyncio.gather(
            *(publisher.publish(request_records(topic, f"early{n}", 10)) for n in range(5)),
            return_exceptions=True,
        )
    finally:
        await publisher.stop()
    assert [repr(o) for o in outcomes if isinstance(o, BaseException)] == []
    assert unlucky == 0  # the three producers that saw no broker were made and dropped
    records = await read_topic(
        settings, topic, 50, timeout_s=30, match=lambda r: b"early" in r.value
    )
    assert len(records) == 50
