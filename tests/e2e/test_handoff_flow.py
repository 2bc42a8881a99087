"""Handoff end to end: routing, feedback over HTTP and Kafka, SLA warning, breach, escalation."""

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from harness.events import became_mql
from shared.events import CloudEvent
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE, SALES_FEEDBACK
from shared.settings import REPO_ROOT
from tests.helpers import eventually, publish, read_topic

pytestmark = pytest.mark.integration


async def handoff_for(client, url, email):
    async def find():
        rows = (await client.get(f"{url}/v1/handoffs")).json()
        return next((h for h in rows if h["lead_key"] == f"email:{email}"), None)

    return await eventually(find, 30, f"a handoff for {email}")


def types_of(records):
    return [json.loads(r.value)["type"].removeprefix("leadrouter.handoff.") for r in records]


async def test_feedback_over_http_and_kafka_and_idempotent_routing(settings, services):
    handoff = await services["handoff"].start()
    redelivered = became_mql("ana@acme.example")
    await publish(
        settings, LEAD_LIFECYCLE, [redelivered, redelivered, became_mql("bo@beta.example", "warm")]
    )
    async with httpx.AsyncClient() as client:
        ana = await handoff_for(client, handoff.url, "ana@acme.example")
        bo = await handoff_for(client, handoff.url, "bo@beta.example")
        assert ana["status"] == "assigned" and ana["tier"] == "hot"
        assert 0 < ana["sla_seconds_left"] <= 300
        post = lambda hid, action, **body: client.post(  # noqa: E731
            f"{handoff.url}/v1/handoffs/{hid}/{action}", json={"rep_id": ana["rep_id"], **body}
        )
        hid = ana["handoff_id"]
        assert (await post(hid, "accept")).json()["status"] == "accepted"
        again = await post(hid, "accept")
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert (await post(hid, "reject", reason="because")).status_code == 422
        assert (await post("no-such-id", "accept")).status_code == 404
        assert (await post(hid, "contact")).json()["status"] == "contacted"
        rejected = await post(hid, "reject", reason="no_budget")
        assert (rejected.json()["status"], rejected.json()["reason"]) == ("rejected", "no_budget")
        assert (await post(hid, "convert", converted_to="sql")).status_code == 409

        # The same feedback as a Kafka event, as some sales tools prefer.
        feedback = CloudEvent(
            id=str(uuid.uuid4()),
            source="crm",
            type="leadrouter.feedback.accept",
            time=datetime.now(UTC),
            subject=bo["lead_key"],
            data={"handoff_id": bo["handoff_id"], "rep_id": bo["rep_id"]},
        )
        await publish(settings, SALES_FEEDBACK, [feedback])

        async def bo_accepted():
            return (await client.get(f"{handoff.url}/v1/handoffs/{bo['handoff_id']}")).json()[
                "status"
            ] == "accepted"

        await eventually(bo_accepted, 30, "bo's handoff accepted from Kafka")
        listed = (
            await client.get(f"{handoff.url}/v1/handoffs", params={"status": "accepted"})
        ).json()
        assert [h["handoff_id"] for h in listed] == [bo["handoff_id"]]
        funnel = (await client.get(f"{handoff.url}/v1/funnel")).json()
        assert (funnel["mqls"], funnel["handoffs"], funnel["accepted"]) == (2, 2, 2)
        assert funnel["sla_attainment"] == 1.0

    records = await read_topic(settings.kafka_bootstrap, settings.topic(HANDOFFS), 7)
    ana_events = [r for r in records if r.key == b"email:ana@acme.example"]
    assert types_of(ana_events) == ["assigned", "accepted", "contacted", "rejected", "recycled"]
    recycled = json.loads(ana_events[-1].value)["data"]
    assert recycled["reason"] == "no_budget"
    assigned = json.loads(ana_events[0].value)["data"]
    assert assigned["accept_by"] and assigned["tier"] == "hot" and assigned["rep_name"]


async def test_sla_warning_breach_reassignment_then_escalation(settings, services, tmp_path):
    playbook = (
        (REPO_ROOT / "deploy" / "playbook.example.yaml")
        .read_text()
        .replace(
            "hot: { accept_minutes: 5, contact_minutes: 15 }",
            "hot: { accept_minutes: 0.05, contact_minutes: 10 }",  # accept within 3 seconds
        )
        .replace("max_reassignments: 2", "max_reassignments: 1")
    )
    path = tmp_path / "playbook.yaml"
    path.write_text(playbook)
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    await publish(settings, LEAD_LIFECYCLE, [became_mql("slow@acme.example")])
    expected = [
        "assigned",
        "sla_warning",
        "sla_breached",
        "reassigned",
        "sla_warning",
        "sla_breached",
        "reassigned",
    ]
    records = await read_topic(
        settings.kafka_bootstrap, settings.topic(HANDOFFS), len(expected), 60
    )
    assert types_of(records) == expected
    events = [json.loads(r.value)["data"] for r in records]
    first, second = events[0]["rep_id"], events[3]["rep_id"]
    assert first and second and first != second
    assert events[3]["previous_rep_id"] == first
    assert events[2]["clock"] == events[5]["clock"] == "accept"
    assert (events[-1]["status"], events[-1]["rep_id"], events[-1]["queue"]) == (
        "escalated",
        None,
        "sales-manager",
    )
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{service.url}/metrics")).text
        funnel = (await client.get(f"{service.url}/v1/funnel")).json()
    assert 'leadrouter_sla_breaches_total{clock="accept",team="sales",tier="hot"} 2.0' in metrics
    assert 'leadrouter_handoff_queue_size{queue="sales-manager",tier="hot"} 1.0' in metrics
    assert (
        'leadrouter_sla_outcomes_total{outcome="breached",team="sales",tier="hot"} 2.0' in metrics
    )
    assert funnel["breaches_by_team"] == {"sales": 1}
    assert funnel["sla_attainment"] == 0.0


async def test_a_queued_lead_goes_to_the_first_rep_back_in_office(settings, services):
    handoff = await services["handoff"].start()
    async with httpx.AsyncClient() as client:
        for rep in ("rep-ana", "rep-ben", "rep-chen"):
            response = await client.put(
                f"{handoff.url}/v1/reps/{rep}/availability", json={"available": False}
            )
            assert response.json()["assigned_from_queue"] == 0
        await publish(settings, LEAD_LIFECYCLE, [became_mql("wait@acme.example")])
        queued = await handoff_for(client, handoff.url, "wait@acme.example")
        assert (queued["status"], queued["queue"], queued["rep_id"]) == (
            "queued",
            "sales-queue",
            None,
        )
        assert "no eligible rep in sales" in queued["routing_reason"]
        assert queued["routing_reason"].count("out of office") == 3
        back = await client.put(
            f"{handoff.url}/v1/reps/rep-ben/availability", json={"available": True}
        )
        assert back.json()["assigned_from_queue"] == 1
        now = (await client.get(f"{handoff.url}/v1/handoffs/{queued['handoff_id']}")).json()
        assert (now["status"], now["rep_id"], now["queue"]) == ("assigned", "rep-ben", None)
        assert now["sla_seconds_left"] > 0
    records = await read_topic(settings.kafka_bootstrap, settings.topic(HANDOFFS), 2)
    assert types_of(records) == ["queued", "assigned"]
    assert json.loads(records[1].value)["data"]["rep_id"] == "rep-ben"
