"""Ingest in-process on a real Kafka: what a 202 publishes, and that a 503 publishes nothing.

The broker-pausing test runs on its own Kafka (the `pausable_kafka` fixture): the Kafka every
other test and engineer uses is never stopped or paused.
"""

import asyncio
import hashlib
import hmac
import json
import os
import signal
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.ingest.app import build_app
from shared.asyncapi import default_document
from shared.events import CONTENT_TYPE, CloudEvent
from shared.kafka import LEAD_EVENTS
from shared.settings import Settings
from tests.contract import contract_errors
from tests.helpers import activity_event, read_topic

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()


def native(n: int, prefix: str) -> dict:
    return {
        "id": f"{prefix}-{n}",
        "identity": {"email": f"lead{n}@{prefix}.example"},
        "activity": {"type": "page_view", "occurred_at": NOW},
    }


def test_a_segment_batch_signed_over_its_first_message_is_accepted(settings: Settings):
    settings = settings.model_copy(update={"segment_shared_secret": SecretStr("segment-secret")})
    first = {
        "type": "track",
        "event": "Démo Request",  # non-ASCII: JSON.stringify leaves it as it is
        "messageId": "batch-1",
        "userId": "u1",
        "timestamp": NOW,
    }
    second = {**first, "messageId": "batch-2", "event": "Pricing Viewed"}
    body = json.dumps([first, second], indent=2).encode()  # the body's own bytes differ
    signed_first = json.dumps(first, separators=(",", ":"), ensure_ascii=False).encode()
    signature = hmac.new(b"segment-secret", signed_first, hashlib.sha1).hexdigest()
    with TestClient(build_app(settings)) as client:
        headers = {"content-type": "application/json", "x-signature": signature}
        accepted = client.post("/v1/webhooks/segment", content=body, headers=headers)
        forged = client.post(
            "/v1/webhooks/segment",
            content=body,
            headers={
                **headers,
                "x-signature": hmac.new(b"wrong", signed_first, "sha1").hexdigest(),
            },
        )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 2
    assert forged.status_code == 401
    records = _read(settings.kafka_bootstrap, settings.topic(LEAD_EVENTS), 2)
    assert {CloudEvent.from_bytes(r.value).id for r in records} == set(accepted.json()["ids"])


def _read(bootstrap: str, topic: str, expected: int) -> list:
    import asyncio

    return asyncio.run(read_topic(bootstrap, topic, expected, timeout_s=20))


@pytest.mark.xdist_group("pausable_kafka")
def test_a_503_publishes_nothing_of_the_request_even_after_kafka_returns(
    settings: Settings, pausable_kafka: tuple[str, int]
):
    bootstrap, pid = pausable_kafka
    settings = settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_publish_timeout_s": 3.0,
            # LEADROUTER_TEST_KAFKA_TRANSACTIONS=0 shows the old behaviour (this test fails).
            "kafka_transactions": os.environ.get("LEADROUTER_TEST_KAFKA_TRANSACTIONS", "1") == "1",
        }
    )
    topic = settings.topic(LEAD_EVENTS)
    with TestClient(build_app(settings)) as client:
        before = client.post("/v1/events", json=[native(n, "before") for n in range(20)])
        assert before.status_code == 202, before.text
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering, as in a network partition
        try:
            refused = client.post("/v1/events", json=[native(n, "refused") for n in range(200)])
        finally:
            os.kill(pid, signal.SIGCONT)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        # Kafka is back: the producer that held the request's records may now deliver them,
        # but inside a transaction that was aborted.
        deadline = time.monotonic() + 60
        after = client.post("/v1/events", json=[native(n, "after") for n in range(5)])
        while after.status_code != 202 and time.monotonic() < deadline:
            time.sleep(1)
            after = client.post("/v1/events", json=[native(n, "after") for n in range(5)])
        assert after.status_code == 202, after.text
    # Ingest has stopped: every producer it had is closed, so nothing more can reach the log.
    # A sentinel at the end of each partition is read only once everything before it is.
    partitions = asyncio.run(_write_sentinels(bootstrap, topic))
    committed = set(asyncio.run(_read_to_sentinels(bootstrap, topic, partitions, "read_committed")))
    assert sum("@refused." in s for s in committed) == 0
    assert sum("@before." in s for s in committed) == 20
    assert sum("@after." in s for s in committed) == 5
    # Read uncommitted, some of the refused records may be in the log (timing decides how
    # many): what the transactions keep from consumers is those and nothing else.
    written = asyncio.run(_read_to_sentinels(bootstrap, topic, partitions, "read_uncommitted"))
    hidden = [s for s in written if s not in committed]
    assert all("@refused." in s for s in hidden), hidden


SENTINEL = "sentinel.example"


async def _write_sentinels(bootstrap: str, topic: str) -> int:
    """Append a sentinel event to every partition of the topic; returns how many partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        for partition in partitions:
            event = activity_event(f"p{partition}@{SENTINEL}", "page_view")
            await producer.send_and_wait(
                topic,
                event.to_bytes(),
                key=event.subject.encode(),
                partition=partition,
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()
    return len(partitions)


async def _read_to_sentinels(
    bootstrap: str, topic: str, partitions: int, isolation_level: str
) -> list[str]:
    """The subjects of every record before the sentinels, each checked against the contract."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    subjects: list[str] = []
    ended: set[int] = set()
    deadline = asyncio.get_running_loop().time() + 60
    try:
        while len(ended) < partitions:
            assert asyncio.get_running_loop().time() < deadline, f"sentinels read: {ended}"
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers or ()}
                    key = record.key.decode() if record.key is not None else None
                    value = record.value or b""
                    errors = contract_errors(default_document(), topic, value, key, headers)
                    assert not errors, errors
                    subject = CloudEvent.from_bytes(value).subject
                    if subject.endswith(f"@{SENTINEL}"):
                        ended.add(tp.partition)
                    else:
                        subjects.append(subject)
    finally:
        await consumer.stop()
    return subjects


def test_a_webhook_item_dated_beyond_the_skew_goes_to_the_dlq_and_the_rest_is_taken(
    settings: Settings,
):
    settings = settings.model_copy(update={"segment_shared_secret": SecretStr("segment-secret")})
    good = {"type": "page", "messageId": "now-1", "userId": "u1", "timestamp": NOW}
    future = {**good, "messageId": "future-1", "timestamp": "2031-11-23T09:30:00Z"}
    body = json.dumps([good, future]).encode()
    signature = hmac.new(b"segment-secret", body, hashlib.sha1).hexdigest()
    with TestClient(build_app(settings)) as client:
        response = client.post(
            "/v1/webhooks/segment",
            content=body,
            headers={"content-type": "application/json", "x-signature": signature},
        )
    assert response.status_code == 202, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (1, 1)
    (dead,) = _read(settings.kafka_bootstrap, f"{settings.topic(LEAD_EVENTS)}.dlq", 1)
    reason = dict(dead.headers)["leadrouter-error"].decode()
    assert reason.startswith("/activity/occurred_at: 2031-11-23T09:30:00+00:00 is")
