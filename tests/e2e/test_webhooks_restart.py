"""Outbound webhooks end to end: no delivery lost when the handoff service is killed."""

import base64
import json
import os

import pytest
from standardwebhooks import Webhook

from harness.events import became_mql
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE
from shared.settings import REPO_ROOT
from tests.helpers import eventually, publish, read_topic
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def test_no_webhook_delivery_is_lost_across_a_handoff_crash(settings, services, tmp_path):
    async with running_receiver() as receiver:
        receiver.always["/crm"] = 500  # the CRM is down at first
        playbook = tmp_path / "playbook.yaml"
        playbook.write_text(
            (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
            + f"""
webhooks:
  - {{ name: crm, url: "{receiver.url}/crm", events: [assigned], timeout_s: 2,
      retry_schedule_s: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1,
                         1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] }}
"""
        )
        handoff = services["handoff"]
        handoff.env["LEADROUTER_PLAYBOOK"] = str(playbook)
        handoff.env["LEADROUTER_WEBHOOK_CRM_SECRET"] = SECRET
        await handoff.start()
        await publish(
            settings, LEAD_LIFECYCLE, [became_mql(f"a{i}@acme.example") for i in range(5)]
        )

        async def crm_was_tried() -> bool:
            return len(receiver.received) >= 3

        await eventually(crm_was_tried, 60, "the first (failing) webhook tries")
        handoff.kill()  # SIGKILL: leased rows, unfinished tries, nothing flushed
        await publish(
            settings, LEAD_LIFECYCLE, [became_mql(f"b{i}@acme.example") for i in range(5)]
        )
        receiver.always["/crm"] = 200  # the CRM is back
        await handoff.start()

        records = await read_topic(settings.kafka_bootstrap, settings.topic(HANDOFFS), 10)
        assigned = {
            json.loads(r.value)["id"]
            for r in records
            if json.loads(r.value)["type"] == "leadrouter.handoff.assigned"
        }
        assert len(assigned) == 10

        async def all_delivered() -> bool:
            ids = {
                Webhook(SECRET).verify(r.body, r.headers)["id"] for r in receiver.answered("/crm")
            }
            return ids == assigned

        await eventually(all_delivered, 90, "every assigned event delivered to the CRM")
        assert any(r.status == 500 for r in receiver.received)  # the crash hit failing tries
