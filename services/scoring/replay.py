"""`leadrouter scoring replay`: rebuild the leads projection from the start of the topics.

It resets scoring's state (leads, aliases, processed ids, stored offsets, decay timers) and
feeds every record again through the same handler and consumer loop as live processing, so
the result is what live processing produced. Lifecycle events it re-derives carry the same
ids as the first time, and are not published unless asked (consumers would drop them anyway).
Stop the scoring service first: the replay writes the offsets it will resume from.
"""

import asyncio
import sys
from typing import TextIO

from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.service import RELAY, RETIER
from shared.consumer import TransactionalConsumer
from shared.db import make_engine, make_sessionmaker
from shared.kafka import HANDOFFS, LEAD_EVENTS, client_options, ensure_topics
from shared.migrate import upgrade_async
from shared.playbook import load_playbook
from shared.settings import Settings

REPLAY_RELAY = "scoring-replay"  # outbox rows nobody publishes, dropped at the end
# Records per transaction: nothing waits on a replay's commits, so they are ten times the live
# batch (fewer round trips and commits per record; a partition's share is ~5 MB at most).
REPLAY_BATCH_MAX = 5000


async def replay(settings: Settings, publish: bool = False, out: TextIO = sys.stderr) -> int:
    """Rebuild the projection; returns how many records were replayed."""
    playbook = load_playbook(settings.playbook)
    await upgrade_async(settings.database_url)
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    group = settings.consumer_group("scoring")
    relay = RELAY if publish else REPLAY_RELAY
    async with sessions() as session, session.begin():
        await repository.reset_projection(session, group, RETIER, [RELAY, REPLAY_RELAY])
    handler = scoring_handler(settings, playbook, relay=relay)
    consumer = TransactionalConsumer(
        name="scoring-replay",
        group_id=group,
        topics=[settings.topic(LEAD_EVENTS), settings.topic(HANDOFFS)],
        bootstrap=client_options(settings),
        sessions=sessions,
        handler=handler,
        relay=relay,
        batch_max=max(settings.consumer_batch_max, REPLAY_BATCH_MAX),
        max_retries=settings.consumer_max_retries,
        standalone=True,
    )

    def progress(done: int, total: int) -> None:
        print(
            f"[replay] {done}/{total} records ({100 * done / max(total, 1):.0f}%)",
            file=out,
            flush=True,
        )

    await consumer.start()
    try:
        total = await consumer.catch_up(progress)
    finally:
        await consumer.stop()
    async with sessions() as session, session.begin():
        if not publish:
            await repository.drop_outbox(session, REPLAY_RELAY)
        count = await repository.count_leads(session)
    await engine.dispose()
    print(f"[replay] done: {total} records, {count} leads", file=out, flush=True)
    return total


def main(settings: Settings, publish: bool) -> int:
    """Entry point of `leadrouter scoring replay`."""
    asyncio.run(replay(settings, publish))
    return 0
