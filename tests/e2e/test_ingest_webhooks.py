"""Webhooks and the native API through a running ingest, read back from Kafka."""

import base64
import hashlib
import hmac
import json
import os
import signal
import time

import httpx
import pytest
from sqlalchemy import select

from shared.auth import hash_api_key
from shared.db import consumer_offsets, make_engine, make_sessionmaker
from shared.kafka import LEAD_EVENTS, dlq
from tests.helpers import eventually, read_topic

pytestmark = pytest.mark.integration

SECRETS = {
    "LEADROUTER_HUBSPOT_CLIENT_SECRET": "hs-secret",
    "LEADROUTER_MAUTIC_WEBHOOK_SECRET": "mautic-secret",
    "LEADROUTER_SEGMENT_SHARED_SECRET": "segment-secret",
    "LEADROUTER_MARKETO_TOKEN": "marketo-token",
}
HUBSPOT = [
    {
        "objectId": 123,
        "propertyName": "email",
        "propertyValue": "hub@acme.example",
        "changeSource": "CRM",
        "eventId": 9001,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1795424400000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
    },
    {
        "objectId": 123,
        "eventId": 9002,
        "subscriptionId": 9,
        "portalId": 33,
        "occurredAt": 1795424400000,
        "subscriptionType": "deal.creation",
    },
]
MAUTIC = {
    "mautic.form_on_submit": [
        {
            "submission": {
                "id": 7,
                "form": {"id": 1, "name": "Demo", "alias": "demo"},
                "lead": {"id": 42, "fields": {"core": {"email": {"value": "mau@acme.example"}}}},
            },
            "timestamp": "2026-11-23T09:30:00+00:00",
        }
    ]
}
SEGMENT = {
    "type": "track",
    "event": "Demo Request",
    "messageId": "ajs-77",
    "anonymousId": "a-77",
    "context": {"traits": {"email": "seg@acme.example"}},
    "timestamp": "2026-11-23T09:31:00Z",
}
MARKETO = {
    "id": "42-7-2026-11-23 09:32:00",
    "identity": {"email": "mkt@acme.example", "external_ids": {"marketo": "42"}},
    "activity": {"type": "form_submit", "occurred_at": "2026-11-23 09:32:00"},
}


def hubspot_request(url: str, body: bytes, secret: str = "hs-secret", age_s: float = 0):
    ts = str(int((time.time() - age_s) * 1000))
    digest = hmac.new(secret.encode(), b"POST" + url.encode() + body + ts.encode(), hashlib.sha256)
    return {
        "x-hubspot-signature-v3": base64.b64encode(digest.digest()).decode(),
        "x-hubspot-request-timestamp": ts,
        "content-type": "application/json",
    }


def signed(source: str, body: bytes, url: str) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if source == "hubspot":
        return hubspot_request(url, body)
    if source == "mautic":
        mac = hmac.new(b"mautic-secret", body, hashlib.sha256).digest()
        headers["webhook-signature"] = base64.b64encode(mac).decode()
    elif source == "segment":
        headers["x-signature"] = hmac.new(b"segment-secret", body, hashlib.sha1).hexdigest()
    else:
        headers["x-leadrouter-token"] = "marketo-token"
    return headers


@pytest.fixture
async def ingest(services, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text(f"web:{hash_api_key('web-key')}\n")
    service = services["ingest"]
    service.env.update(SECRETS, LEADROUTER_API_KEYS_FILE=str(keys))
    return await service.start()


async def test_each_platform_is_verified_normalised_and_published(settings, ingest):
    bodies = {"hubspot": HUBSPOT, "mautic": MAUTIC, "segment": SEGMENT, "marketo": MARKETO}
    async with httpx.AsyncClient() as client:
        for source, payload in bodies.items():
            body = json.dumps(payload).encode()
            url = f"{ingest.url}/v1/webhooks/{source}"
            response = await client.post(url, content=body, headers=signed(source, body, url))
            assert response.status_code == 202, (source, response.text)
        assert (
            await client.post(
                f"{ingest.url}/v1/webhooks/hubspot",
                content=b"[]",
                headers={"content-type": "application/json"},
            )
        ).status_code == 401
    records = await read_topic(settings.kafka_bootstrap, settings.topic(LEAD_EVENTS), 4)
    by_source = {json.loads(r.value)["source"]: r for r in records}
    assert set(by_source) == {f"leadrouter/ingest/{s}" for s in bodies}
    assert {r.key for r in records} == {
        b"email:hub@acme.example",
        b"email:mau@acme.example",
        b"email:seg@acme.example",
        b"email:mkt@acme.example",
    }
    segment_event = json.loads(by_source["leadrouter/ingest/segment"].value)
    assert segment_event["data"]["activity"]["type"] == "demo_request"
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{ingest.url}/metrics")).text
    assert (
        'leadrouter_ingest_events_total{outcome="ignored",source="hubspot",type="other"} 1.0'
        in metrics
    )
    assert (
        'leadrouter_ingest_requests_total{outcome="unauthorized",source="hubspot"} 1.0' in metrics
    )


async def test_bad_signatures_replays_and_tampering_are_401_and_publish_nothing(settings, ingest):
    url = f"{ingest.url}/v1/webhooks/hubspot"
    body = json.dumps(HUBSPOT).encode()
    async with httpx.AsyncClient() as client:
        cases = {
            "wrong secret": (body, hubspot_request(url, body, secret="nope")),
            "expired timestamp": (body, hubspot_request(url, body, age_s=600)),
            "tampered body": (body.replace(b"9001", b"9009"), hubspot_request(url, body)),
        }
        for case, (content, headers) in cases.items():
            response = await client.post(url, content=content, headers=headers)
            assert response.status_code == 401, case
            assert response.headers["content-type"] == "application/problem+json"
        segment = await client.post(
            f"{ingest.url}/v1/webhooks/segment",
            content=b"{}",
            headers={"content-type": "application/json", "x-signature": "00"},
        )
        assert segment.status_code == 401
        unknown = await client.post(
            f"{ingest.url}/v1/webhooks/pardot",
            content=b"{}",
            headers={"content-type": "application/json"},
        )
        assert unknown.status_code == 422
    assert (
        await read_topic(settings.kafka_bootstrap, settings.topic(LEAD_EVENTS), 1, timeout_s=3)
        == []
    )


async def test_native_api_keys_and_unusable_webhook_items_go_to_the_dlq(settings, ingest):
    event = {
        "id": "f-1",
        "identity": {"email": "web@acme.example"},
        "activity": {"type": "form_submit", "occurred_at": "2026-11-23T09:00:00Z"},
    }
    async with httpx.AsyncClient() as client:
        missing = await client.post(f"{ingest.url}/v1/events", json=event)
        assert missing.status_code == 401
        accepted = await client.post(
            f"{ingest.url}/v1/events", json=event, headers={"authorization": "Bearer web-key"}
        )
        assert accepted.status_code == 202
        body = json.dumps(
            [{"subscriptionType": "contact.creation", "objectId": 5, "occurredAt": 1795424400000}]
        ).encode()  # no eventId
        url = f"{ingest.url}/v1/webhooks/hubspot"
        response = await client.post(url, content=body, headers=signed("hubspot", body, url))
        assert response.json() == {"accepted": 0, "ignored": 0, "dead_lettered": 1, "ids": []}
    (record,) = await read_topic(settings.kafka_bootstrap, settings.topic(LEAD_EVENTS), 1)
    assert json.loads(record.value)["source"] == "leadrouter/ingest/web"
    (dead,) = await read_topic(settings.kafka_bootstrap, dlq(settings.topic(LEAD_EVENTS)), 1)
    assert dict(dead.headers)["leadrouter-error"] == b"no eventId"
    assert json.loads(dead.value)["objectId"] == 5


async def test_rate_limit_answers_429_with_retry_after(services):
    service = services["ingest"]
    service.env.update(LEADROUTER_RATE_LIMIT_BURST="2", LEADROUTER_RATE_LIMIT_PER_S="0.01")
    await service.start()
    event = {
        "identity": {"email": "r@acme.example"},
        "activity": {"type": "page_view", "occurred_at": "2026-11-23T09:00:00Z"},
    }
    async with httpx.AsyncClient() as client:
        codes = [(await client.post(f"{service.url}/v1/events", json=event)) for _ in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert int(codes[2].headers["retry-after"]) >= 1


@pytest.mark.xdist_group("pausable_kafka")
async def test_kafka_down_gives_503_and_the_retry_is_counted_once(
    settings, services, pausable_kafka
):
    bootstrap, pid = pausable_kafka  # a private broker: the shared one is never paused
    settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    ingest, scoring = services["ingest"], services["scoring"]
    for service in (ingest, scoring):
        service.env["LEADROUTER_KAFKA_BOOTSTRAP"] = bootstrap
    ingest.env["LEADROUTER_KAFKA_PUBLISH_TIMEOUT_S"] = "2"
    await ingest.start()
    await scoring.start()
    event = {
        "id": "once-1",
        "identity": {"email": "once@acme.example"},
        "activity": {"type": "demo_request", "occurred_at": "2026-11-23T09:00:00Z"},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering, as in a network partition
        try:
            down = await client.post(f"{ingest.url}/v1/events", json=event)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        assert down.headers["content-type"] == "application/problem+json"

        async def retried() -> bool:
            return (await client.post(f"{ingest.url}/v1/events", json=event)).status_code == 202

        await eventually(retried, 60, "ingest to accept again once Kafka is back")
        assert await retried()  # the platform retries once more, for good measure

        copies = await wait_all_consumed(settings)
        assert copies >= 2  # the same event really arrived more than once
        lead = (await client.get(f"{scoring.url}/v1/leads/email:once@acme.example")).json()
    assert lead["events_count"] == 1


async def wait_all_consumed(settings) -> int:
    """Wait until scoring stored offsets past every record on lead-events; returns the count.

    Ingest publishes each request in a transaction, whose commit marker takes an offset of
    its own: compare with the last record's offset per partition, not with the count.
    """
    topic = settings.topic(LEAD_EVENTS)
    records = await read_topic(settings.kafka_bootstrap, topic, 10**6, timeout_s=5)
    last: dict[int, int] = {}
    for record in records:
        last[record.partition] = max(last.get(record.partition, -1), record.offset)
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)

    async def all_consumed() -> bool:
        async with sessions() as s:
            rows = await s.execute(
                select(consumer_offsets.c.partition, consumer_offsets.c.next_offset).where(
                    consumer_offsets.c.topic == topic
                )
            )
            stored = {p: offset for p, offset in rows.all()}
        return all(stored.get(p, 0) > offset for p, offset in last.items())

    try:
        await eventually(all_consumed, 60, "scoring to consume every copy")
    finally:
        await engine.dispose()
    return len(records)


async def test_a_webhook_the_platform_retries_is_counted_once(settings, services):
    ingest, scoring = services["ingest"], services["scoring"]
    ingest.env.update(SECRETS)
    await ingest.start()
    await scoring.start()
    url = f"{ingest.url}/v1/webhooks/hubspot"
    async with httpx.AsyncClient() as client:
        for attempt in (0, 1):  # HubSpot retries with the same eventId and a new attemptNumber
            body = json.dumps([{**HUBSPOT[0], "attemptNumber": attempt}]).encode()
            response = await client.post(url, content=body, headers=signed("hubspot", body, url))
            assert response.status_code == 202
        assert await wait_all_consumed(settings) == 2
        lead = (await client.get(f"{scoring.url}/v1/leads/hubspot:123")).json()
    assert (lead["lead_id"], lead["events_count"]) == ("email:hub@acme.example", 1)
