"""After the handoff (issue 24), end to end through ingest, scoring and handoff on real Kafka and
PostgreSQL, read as a sales tool would."""

import json
from datetime import datetime, timedelta

import httpx
import pytest

from harness.events import became_mql
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE
from shared.settings import REPO_ROOT
from tests.helpers import eventually, minutes_ago, publish, read_topic

pytestmark = pytest.mark.integration


def types_of(records):
    return [json.loads(r.value)["type"].removeprefix("leadrouter.handoff.") for r in records]


async def test_a_lead_that_turns_hot_after_its_handoff_gets_the_hot_clock(settings, services):
    """The reproduction of issue 24, item 1: warm at handoff, then a demo request."""
    for service in services.values():
        await service.start()
    ingest, scoring, handoff = (services[s].url for s in ("ingest", "scoring", "handoff"))
    key = "email:eva@midsize.example"
    forms = [
        {
            "id": f"form-{i}",
            "identity": {"email": "eva@midsize.example"},
            "attributes": {"company": "Midsize", "company_size": 300},
            "activity": {"type": "form_submit", "occurred_at": minutes_ago(30 - i)},
        }
        for i in range(2)
    ]
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{ingest}/v1/events", json=forms)).status_code == 202

        async def the_handoff():
            rows = (await client.get(f"{handoff}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == key), None)

        warm = await eventually(the_handoff, 30, "eva's handoff")
        assert (warm["tier"], warm["score"]) == ("warm", 60)
        warm_by = datetime.fromisoformat(warm["accept_by"])
        assert warm_by - datetime.fromisoformat(warm["assigned_at"]) == timedelta(minutes=60)

        demo = {
            "id": "demo-1",
            "identity": {"email": "eva@midsize.example"},
            "activity": {"type": "demo_request", "occurred_at": minutes_ago(1)},
        }
        assert (await client.post(f"{ingest}/v1/events", json=[demo])).status_code == 202

        async def hot():
            current = await the_handoff()
            return current if current and current["tier"] == "hot" else None

        raised = await eventually(hot, 30, "eva's handoff turned hot")
        lead = (await client.get(f"{scoring}/v1/leads/{key}")).json()
        assert (lead["tier"], lead["score"]) == ("hot", 100)
        assert raised["handoff_id"] == warm["handoff_id"] and raised["score"] == 100
        assert {"rule": "behaviour:demo_request", "points": 40} in raised["explanation"]
        # The hot SLA (5 minutes) from the rise, far sooner than the warm deadline.
        hot_by = datetime.fromisoformat(raised["accept_by"])
        assert hot_by < warm_by - timedelta(minutes=50)
        assert 0 < raised["sla_seconds_left"] <= 300

    records = await read_topic(
        settings.kafka_bootstrap,
        settings.topic(HANDOFFS),
        2,
        match=lambda r: r.key == key.encode(),
    )
    assert types_of(records) == ["assigned", "tier_raised"]
    event = json.loads(records[1].value)["data"]
    assert (event["tier"], event["previous_tier"], event["score"]) == ("hot", "warm", 100)
    assert event["rep_id"] == warm["rep_id"]
    assert datetime.fromisoformat(event["accept_by"]) == hot_by


async def test_a_lead_nobody_works_in_the_manager_queue_goes_back_to_marketing(
    settings, services, tmp_path
):
    """Item 2: the manager queue's clock warns, breaches and recycles with reason unworked."""
    playbook = (
        (REPO_ROOT / "deploy" / "playbook.example.yaml")
        .read_text()
        .replace(
            "hot: { accept_minutes: 5, contact_minutes: 15 }",
            "hot: { accept_minutes: 0.05, contact_minutes: 10 }",  # accept within 3 seconds
        )
        .replace("max_reassignments: 2", "max_reassignments: 0")  # escalate at the breach
        .replace("tiers: { hot: 60, warm: 480, cold: 2880 }", "tiers: { hot: 0.05 }")
    )
    assert "tiers: { hot: 0.05 }" in playbook
    path = tmp_path / "playbook.yaml"
    path.write_text(playbook)
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    await publish(settings, LEAD_LIFECYCLE, [became_mql("idle@acme.example")])
    expected = [
        "assigned",
        "sla_warning",
        "sla_breached",
        "reassigned",
        "manager_queue_warning",
        "manager_queue_breached",
        "recycled",
    ]
    records = await read_topic(
        settings.kafka_bootstrap, settings.topic(HANDOFFS), len(expected), 60
    )
    assert types_of(records) == expected
    events = [json.loads(r.value)["data"] for r in records]
    escalated = events[3]
    assert (escalated["status"], escalated["queue"]) == ("escalated", "sales-manager")
    due = datetime.fromisoformat(escalated["queue_due_at"])
    assert events[4]["queue_due_at"] == escalated["queue_due_at"]
    recycled = events[-1]
    assert (recycled["status"], recycled["reason"], recycled["recycle_policy"]) == (
        "recycled",
        "unworked",
        "recycle",
    )
    assert json.loads(records[-1].value)["time"] >= due.isoformat()[:19]
    async with httpx.AsyncClient() as client:
        row = (await client.get(f"{service.url}/v1/handoffs/{recycled['handoff_id']}")).json()
        funnel = (await client.get(f"{service.url}/v1/funnel")).json()
        metrics = (await client.get(f"{service.url}/metrics")).text
    assert (row["status"], row["reason"], row["closed_at"] is not None) == (
        "recycled",
        "unworked",
        True,
    )
    assert funnel["recycled_by_reason"] == {"unworked": 1}
    assert funnel["recycled_by_policy"] == {"recycle": 1}
    for event in ("warning", "breached"):
        assert (
            f'leadrouter_manager_queue_sla_total{{event="{event}",team="sales",tier="hot"}} 1.0'
            in metrics
        )
    assert (
        'leadrouter_handoffs_recycled_total{policy="recycle",reason="unworked",team="sales"} 1.0'
        in metrics
    )
    assert 'leadrouter_handoff_queue_size{queue="sales-manager",tier="hot"} 0.0' in metrics
