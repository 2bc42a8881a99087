"""Outbound webhooks against a real HTTP receiver, the real Kafka and PostgreSQL."""

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text, update
from standardwebhooks import Webhook

from services.handoff.webhooks import CONSUMER, Webhooks, WebhookSecretMissing
from services.handoff.webhooks.repository import deliveries
from services.handoff.webhooks.service import DELIVERIES
from shared.asyncapi import TOPICS, example_event
from shared.db import processed_events
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


# The webhook consumer on the service runtime: its lag exported, its processed ids pruned,
# finished deliveries past the retention deleted.


def webhook_lag(settings) -> float:
    """The webhook group's lag summed over the handoff topic's partitions (-1: not exported)."""
    topic = settings.topic(HANDOFFS)
    values = [
        REGISTRY.get_sample_value(
            "leadrouter_consumer_lag_messages",
            {"consumer": CONSUMER, "topic": topic, "partition": str(p)},
        )
        for p in range(settings.topic_partitions)
    ]
    return -1 if any(v is None for v in values) else sum(v for v in values if v is not None)


async def test_the_webhook_groups_lag_is_exported_and_grows_while_it_is_held(
    settings, sessions
) -> None:
    settings = settings.model_copy(update={"consumer_lag_interval_s": 0.2})
    async with running_receiver() as receiver:
        receiver.always["/crm"] = 503  # the subscriber is down throughout
        playbook = playbook_with(
            f'  - {{ name: crm, url: "{receiver.url}/crm", events: [assigned] }}\n'
        )
        async with webhooks_running(settings, playbook) as webhooks:
            consumer = webhooks.runtime.consumers[CONSUMER]
            await eventually(lambda: _true(consumer.joined), 30, "the webhook group joined")
            await publish(
                settings, HANDOFFS, [handoff("assigned", f"a{i}@x.example", i) for i in range(4)]
            )
            # A subscriber that is down holds up its deliveries, not the consumer.
            await eventually(
                lambda: _counted_at_least(_count(sessions, "pending"), 4), 30, "queued"
            )
            await eventually(lambda: _true(webhook_lag(settings) == 0), 30, "lag back to 0")

            # Now the consumer itself cannot commit (its table locked): its lag grows.
            async with sessions() as holder, holder.begin():
                await holder.execute(text("lock table webhook_deliveries in exclusive mode"))
                await publish(
                    settings,
                    HANDOFFS,
                    [handoff("assigned", f"b{i}@x.example", i) for i in range(5)],
                )
                await eventually(lambda: _true(webhook_lag(settings) == 5), 30, "lag of 5")
            await eventually(lambda: _true(webhook_lag(settings) == 0), 30, "caught up again")
            assert await _count(sessions, "pending") == 9


async def test_the_upkeep_prunes_the_webhook_groups_ids_and_deletes_old_deliveries(
    settings, sessions
) -> None:
    settings = settings.model_copy(
        update={"dedup_window_s": 3600, "webhook_delivery_retention_s": 3600}
    )
    async with running_receiver() as receiver:
        receiver.plan("/crm", [503], when=b"late@")  # one stays pending (retried much later)
        playbook = playbook_with(
            f'  - {{ name: crm, url: "{receiver.url}/crm", events: [assigned],'
            " retry_schedule_s: [3600] }\n"
        )
        events = [handoff("assigned", f"a{i}@x.example", i) for i in range(3)]
        events.append(handoff("assigned", "late@x.example", 9))
        async with webhooks_running(settings, playbook):
            await publish(settings, HANDOFFS, events)
            await eventually(
                lambda: _counted_at_least(_count(sessions, "delivered"), 3), 30, "delivered"
            )
            await eventually(
                lambda: _counted_at_least(_count(sessions, "pending", tried=True), 1), 30, "tried"
            )

        group = settings.consumer_group(CONSUMER)
        async with sessions() as session, session.begin():
            ids = await session.scalar(
                select(func.count()).where(processed_events.c.consumer_group == group)
            )
            assert ids == 4
            # Two hours pass for the ids and for two of the delivered rows.
            await session.execute(
                update(processed_events)
                .where(processed_events.c.consumer_group == group)
                .values(processed_at=func.now() - timedelta(hours=2))
            )
            old = (
                await session.scalars(
                    select(deliveries.c.id)
                    .where(deliveries.c.status == "delivered")
                    .order_by(deliveries.c.id)
                    .limit(2)
                )
            ).all()
            await session.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(old))
                .values(finished_at=func.now() - timedelta(hours=2))
            )

        async with webhooks_running(settings, playbook):  # upkeep runs once on start
            await eventually(lambda: _ids_left(sessions, group, 0), 30, "ids pruned")
            await eventually(
                lambda: _counted_at_most(_count(sessions, "delivered"), 1), 30, "deleted"
            )
        left = await _statuses(sessions)
        assert sorted(left.values()) == ["delivered", "pending"]
        assert not set(old) & set(left)  # the old two went; the recent one and the pending stay


async def _count(sessions, status: str, tried: bool = False) -> int:
    async with sessions() as session:
        query = select(func.count()).where(deliveries.c.status == status)
        if tried:
            query = query.where(deliveries.c.attempts > 0)
        return int(await session.scalar(query) or 0)


async def _statuses(sessions) -> dict[int, str]:
    async with sessions() as session:
        rows = await session.execute(select(deliveries.c.id, deliveries.c.status))
        return {r.id: r.status for r in rows}


async def _ids_left(sessions, group: str, expected: int) -> bool:
    async with sessions() as session:
        n = await session.scalar(
            select(func.count()).where(processed_events.c.consumer_group == group)
        )
    return n == expected


async def _counted_at_least(count, expected: int) -> bool:
    return await count >= expected


async def _counted_at_most(count, expected: int) -> bool:
    return await count <= expected


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
