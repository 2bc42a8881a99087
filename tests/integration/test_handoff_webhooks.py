"""Outbound webhooks against a real HTTP receiver, the real Kafka and PostgreSQL."""

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from services.handoff.webhooks import Webhooks, WebhookSecretMissing
from services.handoff.webhooks.repository import deliveries
from services.handoff.webhooks.service import DELIVERIES
from shared.asyncapi import TOPICS, example_event
from shared.events import CloudEvent, derived_event_id
from shared.kafka import HANDOFFS, ensure_topics
from shared.playbook import Playbook, parse_playbook
from shared.runtime import Runtime
from shared.settings import REPO_ROOT
from tests.helpers import eventually, publish
from tests.webhook_receiver import HANG, Receiver, running_receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
TOPIC = next(t for t in TOPICS if t.name == HANDOFFS)


def playbook_with(webhooks: str) -> Playbook:
    base = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
    return parse_playbook(base + "\nwebhooks:\n" + webhooks)


def handoff(kind: str, lead: str, n: int, **data: Any) -> CloudEvent:
    """A handoff event of `kind` for a lead, built from the contract's example."""
    event = example_event(TOPIC, f"leadrouter.handoff.{kind}")
    return event.model_copy(
        update={
            "id": derived_event_id("webhook-test", kind, lead, str(n)),
            "subject": f"email:{lead}",
            "data": {
                **event.data,
                "handoff_id": f"h-{lead}",
                "lead_key": f"email:{lead}",
                "email": lead,
                **data,
            },
        }
    )


@asynccontextmanager
async def webhooks_running(settings, playbook: Playbook) -> AsyncIterator[Webhooks]:
    runtime = Runtime(settings, "handoff")
    secrets = {s.secret_variable: SECRET for s in playbook.webhooks}
    webhooks = Webhooks(runtime, playbook, environ=secrets)
    await runtime.start()
    runtime.start_consuming()
    try:
        yield webhooks
    finally:
        await runtime.stop()


def verified(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    """Bodies of the 200-answered requests on a path, each checked with the library's verify."""
    return [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.answered(path)]


async def test_signed_events_reach_subscribers_filtered_in_order_after_500s(settings) -> None:
    async with running_receiver() as receiver:
        playbook = playbook_with(
            f"""
  - {{ name: crm, url: "{receiver.url}/crm", events: [assigned, sla_warning], tiers: [hot],
      retry_schedule_s: [0.2, 0.2, 0.2] }}
  - {{ name: slack, url: "{receiver.url}/slack", events: [assigned], format: slack }}
"""
        )
        # The first two tries of ana's assignment fail: her warning must wait behind it.
        receiver.plan("/crm", [500, 503], when=b"ana@acme.example")
        events = [
            handoff("assigned", "ana@acme.example", 1),
            handoff("sla_warning", "ana@acme.example", 2),
            handoff("accepted", "ana@acme.example", 3),  # nobody subscribed to it
            handoff("assigned", "bo@beta.example", 4, tier="warm"),  # crm wants hot only
            handoff("assigned", "cy@gamma.example", 5),
        ]
        async with webhooks_running(settings, playbook):
            await publish(settings, HANDOFFS, events)
            await eventually(
                lambda: _at_least(len(receiver.answered("/crm")), 3), 30, "crm deliveries"
            )
            await eventually(
                lambda: _at_least(len(receiver.answered("/slack")), 3), 30, "slack deliveries"
            )

        crm = verified(receiver, "/crm")
        assert [e["id"] for e in crm if e["subject"] == "email:ana@acme.example"] == [
            events[0].id,
            events[1].id,
        ]
        assert sorted(e["id"] for e in crm) == sorted([events[0].id, events[1].id, events[4].id])
        as_on_kafka = json.loads(events[0].to_bytes())
        assert next(e for e in crm if e["id"] == events[0].id) == as_on_kafka
        tries = [r for r in receiver.received if r.path == "/crm" and b"ana@" in r.body]
        assert [r.status for r in tries[:3]] == [500, 503, 200]
        assert len({r.headers["webhook-id"] for r in tries[:3]}) == 1  # same id on each retry
        assert tries[0].headers["content-type"] == "application/cloudevents+json"

        slack = verified(receiver, "/slack")
        assert len(slack) == 3 and all("text" in m and "blocks" in m for m in slack)
        ana = next(m for m in slack if "ana@acme.example" in m["text"])
        details = ana["blocks"][1]["text"]["text"]
        assert "New hot lead for Ben Okafor" in ana["text"]
        assert "fair rotation chose Ben Okafor" in details and "Accept by" in details


async def test_a_timeout_is_retried_and_the_last_failure_is_dead(settings, sessions) -> None:
    async with running_receiver() as receiver:
        playbook = playbook_with(
            f"""
  - {{ name: slowpoke, url: "{receiver.url}/slow", events: [assigned], timeout_s: 0.5,
      retry_schedule_s: [0.1] }}
  - {{ name: refusing, url: "{receiver.url}/refuse", events: [assigned],
      retry_schedule_s: [0.1, 0.1] }}
"""
        )
        receiver.plan("/slow", [HANG])
        receiver.always["/refuse"] = 500
        dead_before = DELIVERIES.labels("refusing", "dead")._value.get()
        event = handoff("assigned", "dan@delta.example", 1)
        async with webhooks_running(settings, playbook):
            await publish(settings, HANDOFFS, [event])
            await eventually(lambda: _rows(sessions, "refusing", "dead"), 30, "a dead delivery")
            await eventually(lambda: _rows(sessions, "slowpoke", "delivered"), 30, "a retry")

        assert [r.status for r in receiver.received if r.path == "/slow"] == [HANG, 200]
        assert verified(receiver, "/slow")[0]["id"] == event.id
        assert [r.status for r in receiver.received if r.path == "/refuse"] == [500, 500, 500]
        dead = (await _rows(sessions, "refusing", "dead"))[0]
        assert dead.attempts == 3 and dead.last_error == "HTTP 500"
        assert DELIVERIES.labels("refusing", "dead")._value.get() == dead_before + 1


async def test_a_dead_endpoint_does_not_hold_up_a_healthy_one(settings, sessions) -> None:
    async with running_receiver() as receiver:
        playbook = playbook_with(
            f"""
  - {{ name: blackhole, url: "{receiver.url}/hang", events: [assigned], timeout_s: 30 }}
  - {{ name: healthy, url: "{receiver.url}/ok", events: [assigned] }}
"""
        )
        receiver.always["/hang"] = HANG
        events = [handoff("assigned", f"lead{i}@acme.example", i) for i in range(30)]
        async with webhooks_running(settings, playbook):
            await publish(settings, HANDOFFS, events)
            await eventually(
                lambda: _at_least(len(receiver.answered("/ok")), 30), 30, "healthy deliveries"
            )
            # Meanwhile the black hole's first requests are still waiting for an answer.
            assert await _rows(sessions, "blackhole", "delivered") == []
            assert receiver.answered("/hang", 200) == []
        assert sorted(e["id"] for e in verified(receiver, "/ok")) == sorted(e.id for e in events)


def test_a_subscription_without_a_secret_stops_the_service_with_what_to_set(settings) -> None:
    playbook = playbook_with(
        '  - { name: crm-eu, url: "https://crm.example/h", events: [assigned] }'
    )
    with pytest.raises(WebhookSecretMissing, match="LEADROUTER_WEBHOOK_CRM_EU_SECRET"):
        Webhooks(Runtime(settings, "handoff"), playbook, environ={})


async def _at_least(value: int, expected: int) -> bool:
    return value >= expected


async def _rows(sessions, subscription: str, status: str) -> list[Any]:
    async with sessions() as session:
        result = await session.execute(
            select(deliveries).where(
                deliveries.c.subscription == subscription, deliveries.c.status == status
            )
        )
        return list(result.all())


@pytest.fixture
async def sessions(settings):
    from shared.db import make_engine, make_sessionmaker

    await ensure_topics(settings)
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()
