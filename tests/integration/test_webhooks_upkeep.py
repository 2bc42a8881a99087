"""The webhook consumer on the service runtime: its lag exported, its processed ids pruned,
finished deliveries past the retention deleted (real Kafka, PostgreSQL, HTTP receiver)."""

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text, update

from services.handoff.webhooks import CONSUMER
from services.handoff.webhooks.repository import deliveries
from shared.db import processed_events
from shared.kafka import HANDOFFS
from tests.helpers import eventually, publish
from tests.integration.test_webhooks import handoff, playbook_with, sessions, webhooks_running
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.integration

__all__ = ["sessions"]  # the fixture, imported for the tests below


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
            await eventually(lambda: _at_least(_count(sessions, "pending"), 4), 30, "queued")
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
            await eventually(lambda: _at_least(_count(sessions, "delivered"), 3), 30, "delivered")
            await eventually(
                lambda: _at_least(_count(sessions, "pending", tried=True), 1), 30, "tried"
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
            await eventually(lambda: _at_most(_count(sessions, "delivered"), 1), 30, "deleted")
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


async def _at_least(count, expected: int) -> bool:
    return await count >= expected


async def _at_most(count, expected: int) -> bool:
    return await count <= expected


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
