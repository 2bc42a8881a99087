"""Ingest's transactional producer replaced while Kafka is paused, then used when it returns.

Runs on its own broker (the `pausable_kafka` fixture, port LEADROUTER_TEST_PAUSABLE_KAFKA_PORT):
the Kafka every other test and engineer uses is never paused.
"""

import asyncio
import logging
import os
import signal

import pytest

from services.ingest.publisher import PublishFailed, Record, RequestPublisher
from shared.events import CONTENT_TYPE, CloudEvent
from shared.kafka import LEAD_EVENTS, ensure_topics
from shared.settings import Settings
from tests.helpers import activity_event, read_topic

pytestmark = pytest.mark.integration

PAUSE_S = 20.0


def request(topic: str, name: str, n: int) -> list[Record]:
    events: list[CloudEvent] = [
        activity_event(f"{name}-{i}@replaced.example", "page_view", i) for i in range(n)
    ]
    headers = [("content-type", CONTENT_TYPE.encode())]  # as ingest sends them
    return [Record(topic, e.to_bytes(), e.subject.encode(), headers) for e in events]


async def test_requests_waiting_when_kafka_returns_are_acknowledged_by_the_replacement_producer(
    settings: Settings, pausable_kafka: tuple[str, int], caplog: pytest.LogCaptureFixture
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
    caplog.set_level(logging.WARNING, logger="services.ingest.publisher")
    try:
        await publisher.publish(request(topic, "before", 5))
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering, as in a network partition
        try:
            # In flight when Kafka went away: times out, and its abort cannot reach the broker.
            lost = asyncio.create_task(publisher.publish(request(topic, "lost", 25)))
            await asyncio.sleep(PAUSE_S - 6)
            # Sixty requests arrive in the pause's last seconds and wait for Kafka.
            waiting = [
                asyncio.create_task(publisher.publish(request(topic, f"waiting{n}", 25)))
                for n in range(60)
            ]
            await asyncio.sleep(6)
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(PublishFailed):
            await lost
        assert "replacing producer" in caplog.text  # the path under test was taken
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
            *(publisher.publish(request(topic, f"early{n}", 10)) for n in range(5)),
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
