"""`leadrouter scoring replay`: rebuild the leads projection from the start of the topics.

It resets scoring's state (leads, aliases, processed ids, stored offsets, decay timers) and
feeds every record again through the same handler and consumer loop as live processing, so
the result is what live processing produced. Lifecycle events it re-derives carry the same
ids as the first time, and are not published unless asked (consumers would drop them anyway).
Stop the scoring service first: the replay writes the offsets it will resume from.
"""

import asyncio
import sys
import time

from aiokafka import TopicPartition
from sqlalchemy import delete, func, select

from services.scoring.app import scoring_handler
from services.scoring.repository import lead_aliases, leads
from services.scoring.service import RELAY, RETIER
from shared.consumer import TransactionalConsumer
from shared.db import consumer_offsets, make_engine, make_sessionmaker, outbox, processed_events
from shared.kafka import HANDOFFS, LEAD_EVENTS, client_options, ensure_topics
from shared.migrate import upgrade_async
from shared.playbook import load_playbook
from shared.settings import Settings
from shared.timers import timers

REPLAY_RELAY = "scoring-replay"  # outbox rows nobody publishes, dropped at the end


async def replay(settings: Settings, publish: bool = False, out=sys.stderr) -> int:
    """Rebuild the projection; returns how many records were replayed."""
    playbook = load_playbook(settings.playbook)
    await upgrade_async(settings.database_url)
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    group = settings.consumer_group("scoring")
    relay = RELAY if publish else REPLAY_RELAY
    async with sessions() as session, session.begin():
        for statement in (
            delete(leads),
            delete(lead_aliases),
            delete(processed_events).where(processed_events.c.consumer_group == group),
            delete(consumer_offsets).where(consumer_offsets.c.consumer_group == group),
            delete(timers).where(timers.c.kind == RETIER),
            delete(outbox).where(outbox.c.relay.in_([RELAY, REPLAY_RELAY])),
        ):
            await session.execute(statement)
    handler = scoring_handler(settings, playbook)
    handler.relay = relay
    consumer = TransactionalConsumer(
        name="scoring-replay",
        group_id=group,
        topics=[settings.topic(LEAD_EVENTS), settings.topic(HANDOFFS)],
        bootstrap=client_options(settings),
        sessions=sessions,
        handler=handler,
        relay=relay,
        batch_max=settings.consumer_batch_max,
        max_retries=settings.consumer_max_retries,
        standalone=True,
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment, key=lambda tp: (tp.topic, tp.partition))
        ends: dict[TopicPartition, int] = await consumer.consumer.end_offsets(partitions)
        total = sum(ends.values())
        done, last_report = 0, 0.0
        while True:
            positions = {tp: await consumer.consumer.position(tp) for tp in partitions}
            done = sum(min(positions[tp], ends[tp]) for tp in partitions)
            if time.monotonic() - last_report > 1 or done >= total:
                print(
                    f"[replay] {done}/{total} records ({100 * done / max(total, 1):.0f}%)",
                    file=out,
                    flush=True,
                )
                last_report = time.monotonic()
            if all(positions[tp] >= ends[tp] for tp in partitions):
                break
            batches = await consumer.consumer.getmany(
                timeout_ms=500, max_records=settings.consumer_batch_max
            )
            for tp, records in batches.items():
                await consumer.process(tp, records)
    finally:
        await consumer.stop()
    async with sessions() as session, session.begin():
        if not publish:
            await session.execute(delete(outbox).where(outbox.c.relay == REPLAY_RELAY))
        count = await session.scalar(select(func.count()).select_from(leads))
    await engine.dispose()
    print(f"[replay] done: {total} records, {count} leads", file=out, flush=True)
    return total


def main(settings: Settings, publish: bool) -> int:
    """Entry point of `leadrouter scoring replay`."""
    asyncio.run(replay(settings, publish))
    return 0
