"""Erasure end to end (HTTP DELETE and a Segment delete message) and the audit trail.

The services run with a key file: an operator (admin), a sales tool (handoffs, feedback,
reps) and a web form (events). Nothing here uses the development open mode.
"""

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, text

from services.handoff.repository import handoffs
from services.scoring.repository import lead_aliases, leads
from shared.auth import key_file_line
from shared.db import make_engine
from shared.events import LIFECYCLE_ERASED, CloudEvent
from shared.kafka import LEAD_LIFECYCLE, SALES_FEEDBACK
from tests.helpers import eventually, minutes_ago, publish, read_topic, start_all

pytestmark = pytest.mark.integration

ADMIN = {"authorization": "Bearer k-ops"}
SALES = {"authorization": "Bearer k-crm"}
WEB = {"authorization": "Bearer k-web"}


@pytest.fixture
async def running(services, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text(
        "\n".join(
            [
                key_file_line("ops", "k-ops", ["admin"]),
                key_file_line("crm", "k-crm", ["handoffs:read", "feedback:write", "reps:write"]),
                key_file_line("web", "k-web", ["events:write"]),
            ]
        )
        + "\n"
    )
    for service in services.values():
        service.env.update(
            LEADROUTER_API_KEYS_FILE=str(keys), LEADROUTER_SEGMENT_SHARED_SECRET="seg-secret"
        )
    await start_all(services.values())
    return {name: service.url for name, service in services.items()}


def qualifying(email: str, prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}-1",
            "identity": {"email": email, "external_ids": {"crm": f"{prefix}-crm"}},
            "attributes": {"company": "Acme", "country": "DE", "first_name": "Ana"},
            "activity": {"type": "pricing_page_view", "occurred_at": minutes_ago(60)},
        },
        {
            "id": f"{prefix}-2",
            "identity": {"email": email},
            "activity": {"type": "demo_request", "occurred_at": minutes_ago(55)},
        },
    ]


async def handoff_of(client, url, email):
    async def find():
        response = await client.get(f"{url}/v1/handoffs", headers=SALES)
        return next((h for h in response.json() if h["email"] == email), None)

    return await eventually(find, 60, f"a handoff for {email}")


async def test_an_erased_lead_is_gone_everywhere_and_the_funnel_keeps_its_counts(settings, running):
    async with httpx.AsyncClient() as client:
        sent = await client.post(
            f"{running['ingest']}/v1/events", json=qualifying("ana@acme.example", "a"), headers=WEB
        )
        assert sent.status_code == 202, sent.text
        handoff = await handoff_of(client, running["handoff"], "ana@acme.example")
        accepted = await client.post(
            f"{running['handoff']}/v1/handoffs/{handoff['handoff_id']}/accept",
            json={"rep_id": handoff["rep_id"]},
            headers=SALES,
        )
        assert accepted.status_code == 200, accepted.text
        # The same sales tool reports the first call over Kafka: audited under its source.
        contacted = CloudEvent(
            id=str(uuid.uuid4()),
            source="crm-connector",
            type="leadrouter.feedback.contact",
            time=datetime.now(UTC),
            subject=handoff["lead_key"],
            data={"handoff_id": handoff["handoff_id"], "rep_id": handoff["rep_id"]},
        )
        await publish(settings, SALES_FEEDBACK, [contacted])

        async def audited_from_kafka():
            trail = await client.get(
                f"{running['handoff']}/v1/audit",
                params={"actor": "kafka:crm-connector"},
                headers=ADMIN,
            )
            return trail.json()

        (from_kafka,) = await eventually(audited_from_kafka, 30, "Kafka feedback audited")
        assert (from_kafka["action"], from_kafka["target"]) == (
            "feedback.contact",
            handoff["handoff_id"],
        )
        funnel_before = (await client.get(f"{running['handoff']}/v1/funnel", headers=SALES)).json()

        lead_url = f"{running['scoring']}/v1/leads/email:ana@acme.example"
        assert (await client.delete(lead_url, headers=SALES)).status_code == 403
        assert (await client.delete(lead_url)).status_code == 401
        erased = await client.delete(lead_url, headers=ADMIN)
        assert erased.status_code == 204, erased.text
        assert (await client.get(lead_url, headers=ADMIN)).status_code == 404
        assert (await client.delete(lead_url, headers=ADMIN)).status_code == 404

        (record,) = await read_topic(
            settings,
            settings.topic(LEAD_LIFECYCLE),
            1,
            match=lambda r: json.loads(r.value)["type"] == LIFECYCLE_ERASED,
        )
        event = json.loads(record.value)
        assert event["data"]["lead_key"] == "email:ana@acme.example"
        assert "ana@" not in json.dumps({k: v for k, v in event["data"].items() if k != "lead_key"})
        assert record.key == b"email:ana@acme.example"

        async def anonymised():
            listed = (await client.get(f"{running['handoff']}/v1/handoffs", headers=SALES)).json()
            mine = [h for h in listed if h["handoff_id"] == handoff["handoff_id"]]
            return mine and mine[0]["status"] == "erased" and mine[0]

        gone = await eventually(anonymised, 30, "the handoff anonymised")
        assert gone["email"] is None and gone["attributes"] == {} and gone["explanation"] == []
        assert gone["lead_key"].startswith("erased:")
        funnel_after = (await client.get(f"{running['handoff']}/v1/funnel", headers=SALES)).json()
        for count in ("leads", "mqls", "handoffs", "accepted", "sla_attainment"):
            assert funnel_after[count] == funnel_before[count], count

        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(select(leads))).all() == []
                assert (await conn.execute(select(lead_aliases))).all() == []
                emails = await conn.scalar(
                    select(text("count(*)"))
                    .select_from(handoffs)
                    .where(handoffs.c.email.isnot(None))
                )
                # the lead's timers; the playbook's goals job has one of its own, of no lead
                timers_left = await conn.scalar(
                    text("select count(*) from timers where kind <> 'handoff.goals_check'")
                )
        finally:
            await engine.dispose()
        assert emails == 0
        assert timers_left == 0  # decay and SLA timers of the lead cancelled

        # The person comes back with an email: a new lead, from nothing.
        again = [qualifying("ana@acme.example", "b")[1]]
        assert (
            await client.post(f"{running['ingest']}/v1/events", json=again, headers=WEB)
        ).status_code == 202

        async def new_lead():
            response = await client.get(lead_url, headers=ADMIN)
            return response.status_code == 200 and response.json()

        lead = await eventually(new_lead, 30, "a new lead")
        assert lead["events_count"] == 1 and "company" not in lead["attributes"]

        trail = await client.get(f"{running['handoff']}/v1/audit", headers=ADMIN)
        assert trail.status_code == 200
        entries = {(e["actor"], e["action"]): e for e in trail.json()}
        assert entries[("crm", "feedback.accept")]["target"] == handoff["handoff_id"]
        erase_entry = entries[("ops", "lead.erase")]
        assert erase_entry["detail"] == {"events": [event["id"]]}
        assert "ana@" not in json.dumps(trail.json())  # the trail holds no personal data
        assert (
            await client.get(f"{running['scoring']}/v1/audit", headers=SALES)
        ).status_code == 403


async def test_a_segment_delete_message_erases_the_person(settings, running):
    async with httpx.AsyncClient() as client:
        identify = {
            "type": "identify",
            "messageId": "seg-id-1",
            "userId": "u-bob",
            "traits": {"email": "bob@acme.example", "company": "Acme"},
            "timestamp": "2026-11-23T09:00:00Z",
        }
        delete = {
            "type": "delete",
            "messageId": "seg-del-1",
            "userId": "u-bob",
            "timestamp": "2026-11-23T10:00:00Z",
        }
        url = f"{running['ingest']}/v1/webhooks/segment"
        for message in (identify, delete):
            body = json.dumps(message).encode()
            signature = hmac.new(b"seg-secret", body, hashlib.sha1).hexdigest()
            response = await client.post(
                url,
                content=body,
                headers={"content-type": "application/json", "x-signature": signature},
            )
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == 1

        lead_url = f"{running['scoring']}/v1/leads/email:bob@acme.example"

        async def erased():
            trail = await client.get(
                f"{running['scoring']}/v1/audit", params={"action": "lead.erase"}, headers=ADMIN
            )
            return trail.json()

        (entry,) = await eventually(erased, 60, "the erasure in the audit trail")
        assert entry["actor"] == "kafka:leadrouter/ingest/segment"
        assert (await client.get(lead_url, headers=ADMIN)).status_code == 404
        assert (
            await client.get(
                f"{running['scoring']}/v1/leads",
                params={"alias": "segment_user:u-bob"},
                headers=ADMIN,
            )
        ).status_code == 404


async def test_availability_changes_are_audited_with_the_key_name(running):
    async with httpx.AsyncClient() as client:
        reps = (await client.get(f"{running['handoff']}/v1/reps", headers=SALES)).json()
        rep_id = reps[0]["rep_id"]
        changed = await client.put(
            f"{running['handoff']}/v1/reps/{rep_id}/availability",
            json={"available": False},
            headers=SALES,
        )
        assert changed.status_code == 200, changed.text
        trail = (
            await client.get(
                f"{running['handoff']}/v1/audit", params={"actor": "crm"}, headers=ADMIN
            )
        ).json()
    assert [(e["action"], e["target"], e["detail"]) for e in trail] == [
        ("rep.availability", rep_id, {"available": False})
    ]
