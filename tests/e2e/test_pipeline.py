"""End to end: HTTP in at ingest, a handoff event out on Kafka, read as a sales tool would."""

import json

import httpx
import pytest

from shared.kafka import HANDOFFS
from tests.helpers import minutes_ago, read_topic, start_all

pytestmark = pytest.mark.integration


async def test_a_demo_request_reaches_a_rep_on_the_handoff_topic(settings, services):
    await start_all(services.values())
    ingest = services["ingest"].url
    events = [
        {
            "id": "web-1",
            "identity": {"email": "Ana@Acme.example"},
            "attributes": {"company": "Acme", "country": "DE"},
            "activity": {"type": "pricing_page_view", "occurred_at": minutes_ago(60)},
        },
        {
            "id": "web-2",
            "identity": {"email": "ana@acme.example"},
            "activity": {"type": "demo_request", "occurred_at": minutes_ago(55)},
        },
        {
            "id": "web-3",
            "identity": {"email": "bob@other.example"},
            "activity": {"type": "email_open", "occurred_at": minutes_ago(54)},
        },
    ]
    async with httpx.AsyncClient() as client:
        accepted = await client.post(f"{ingest}/v1/events", json=events)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == 3
        # The platform retries the same request: the ids make it count once downstream.
        assert (await client.post(f"{ingest}/v1/events", json=events)).status_code == 202

    records = await read_topic(settings.kafka_bootstrap, settings.topic(HANDOFFS), 1)
    assert len(records) == 1
    handoff = json.loads(records[0].value)
    assert records[0].key == b"email:ana@acme.example"
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"
    assert handoff["specversion"] == "1.0"
    assert handoff["type"] == "leadrouter.handoff.assigned"
    assert handoff["subject"] == "email:ana@acme.example"
    data = handoff["data"]
    assert data["rep_id"] in {"rep-ana", "rep-ben", "rep-chen"}
    assert data["score"] == 50
    assert data["attributes"] == {"company": "Acme", "country": "DE"}
    assert {"rule": "behaviour:demo_request", "points": 40} in data["explanation"]
    assert "fair rotation" in data["routing_reason"]

    async with httpx.AsyncClient() as client:
        lead = (
            await client.get(f"{services['scoring'].url}/v1/leads/email:ana@acme.example")
        ).json()
        assert (lead["score"], lead["stage"], lead["events_count"]) == (50, "mql", 2)
        bob = (
            await client.get(
                f"{services['scoring'].url}/v1/leads", params={"email": "BOB@other.example"}
            )
        ).json()
        assert (bob["score"], bob["stage"]) == (2, "lead")
        listed = (await client.get(f"{services['handoff'].url}/v1/handoffs")).json()
        assert [h["handoff_id"] for h in listed] == [data["handoff_id"]]
        reps = (await client.get(f"{services['handoff'].url}/v1/reps")).json()
        assert sum(r["open_handoffs"] for r in reps) == 1


async def test_bad_input_gets_problem_json_and_publishes_nothing(settings, services):
    ingest = (await services["ingest"].start()).url
    async with httpx.AsyncClient() as client:
        invalid = await client.post(
            f"{ingest}/v1/events",
            json=[
                {
                    "identity": {"email": "ok@acme.example"},
                    "activity": {"type": "page_view", "occurred_at": minutes_ago(60)},
                },
                {
                    "identity": {"email": "ok@acme.example"},
                    "activity": {"type": "page_view", "occurred_at": "yesterday"},
                },
            ],
        )
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        assert invalid.json()["errors"][0]["pointer"] == "/1/activity/occurred_at"

        malformed = await client.post(
            f"{ingest}/v1/events", content=b"{oops", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
        assert (
            await client.post(
                f"{ingest}/v1/events", content=b"a=b", headers={"content-type": "text/plain"}
            )
        ).status_code == 415
        too_big = b"[" + b" " * (1024 * 1024) + b"]"
        assert (
            await client.post(
                f"{ingest}/v1/events", content=too_big, headers={"content-type": "application/json"}
            )
        ).status_code == 413
        metrics = (await client.get(f"{ingest}/metrics")).text
        assert (
            'leadrouter_ingest_events_total{outcome="invalid",source="api",type="native"} 2.0'
            in metrics
        )

    from shared.kafka import LEAD_EVENTS

    assert (
        await read_topic(settings.kafka_bootstrap, settings.topic(LEAD_EVENTS), 1, timeout_s=3)
        == []
    )
