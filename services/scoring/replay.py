"""`leadrouter scoring replay`: rebuild the leads projection from the start of the topics.

It reads both topics (lead events and handoffs) from their beginning to the end offsets they
have when it starts, folds every record in memory through the same cores and identity rules
as the live handler (services/scoring/rebuild.py), and then writes the result once: in ONE
transaction it empties scoring's state (leads, aliases, touches, processed ids, stored offsets,
decay timers, unpublished outbox rows), COPYs the new leads, aliases, touches, processed ids
and timers, and stores the end offsets, so a crash leaves either the old projection or the new one.
Stop the scoring service first: the replay writes the offsets it will resume from.

With --publish the lifecycle events it re-derives are published (with the same ids as the
first time): that takes the slower path that feeds every record through the live consumer
and handler, whose outbox rows the relay publishes.
"""

import asyncio
import gc
import heapq
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring import repository
from services.scoring.core import next_score_change
from services.scoring.erasure import lead_hash
from services.scoring.names import RELAY, RETIER
from services.scoring.rebuild import Erasure, Rebuild, ReplayRecord, received_us
from shared.consumer import TransactionalConsumer
from shared.db import make_engine, make_sessionmaker
from shared.history import decode_record, open_history
from shared.kafka import HANDOFFS, LEAD_EVENTS, client_options, ensure_topics
from shared.migrate import upgrade_async
from shared.playbook import load_playbook
from shared.settings import ScoringSettings

REPLAY_RELAY = "scoring-replay"  # outbox rows nobody publishes, dropped at the end
# Records per transaction: nothing waits on a replay's commits, so they are ten times the live
# batch (fewer round trips and commits per record; a partition's share is ~5 MB at most).
REPLAY_BATCH_MAX = 5000
# The fast path's reading: records per getmany() and per partition fetch, and how many decoded
# records a partition may hold while it waits for a slower one (bounds memory to a few
# hundred MB whatever the topic's size).
FETCH_RECORDS = 10_000
FETCH_PARTITION_BYTES = 8 * 1024 * 1024
BUFFERED_PER_PARTITION = 20_000
YIELD_EVERY = 2_000  # records folded between turns of the event loop


async def replay(settings: ScoringSettings, publish: bool = False, out: TextIO = sys.stderr) -> int:
    """Rebuild the projection; returns how many records were replayed."""
    if publish:
        return await replay_through_consumer(settings, publish=True, out=out)
    total, _ = await _replay(settings, out)
    return total


async def _replay(settings: ScoringSettings, out: TextIO) -> tuple[int, Rebuild]:
    """The in-memory replay; returns how many records were replayed, and the fold."""
    playbook = load_playbook(settings.playbook)
    await upgrade_async(settings.database_url)
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    # The fold and the rows make millions of small objects and no cycles: the cyclic
    # collector would walk the whole projection again and again (the command keeps it off).
    collecting = gc.isenabled()
    gc.disable()
    try:
        async with sessions() as session:
            tombstones = await repository.erased_hashes(session)
        rebuild = Rebuild(playbook, tombstones=set(tombstones))
        total, count = await _rebuild_and_write(settings, rebuild, sessions, out)
    finally:
        await engine.dispose()
        if collecting:
            gc.enable()
    print(f"[replay] done: {total} records, {count} leads", file=out, flush=True)
    return total, rebuild


async def _rebuild_and_write(
    settings: ScoringSettings,
    rebuild: Rebuild,
    sessions: async_sessionmaker[AsyncSession],
    out: TextIO,
) -> tuple[int, int]:
    """Fold the topics into `rebuild`, then replace scoring's state with the result in one
    transaction; returns the records read and the leads written."""
    group = settings.consumer_group("scoring")
    playbook = rebuild.playbook
    total, next_offsets = await _fold_topics(settings, rebuild, _progress(out))
    due = {
        key: at
        for key, state in rebuild.leads.states.items()
        if (at := next_score_change(state, playbook)) is not None
    }
    print(f"[replay] writing {len(rebuild.leads.states)} leads", file=out, flush=True)
    async with sessions() as session, session.begin():
        await repository.truncate_projection(session, group, RETIER, [RELAY, REPLAY_RELAY])
        count = await repository.copy_leads(session, rebuild.leads.states.values())
        await repository.copy_aliases(session, rebuild.leads.bindings)
        await repository.copy_touches(session, rebuild.touches)
        await repository.copy_processed_ids(session, group, rebuild.processed)
        await repository.copy_timers(session, RETIER, due)
        await repository.copy_offsets(session, group, next_offsets)
        await repository.add_tombstones(
            session, (h for e in rebuild.erasures for h in map(lead_hash, e.lead_keys))
        )
        if rebuild.erasures:
            await _audit_erasures(session, rebuild.erasures)
    return total, count


async def _audit_erasures(session: AsyncSession, erasures: list[Erasure]) -> None:
    """Record the erasures in the audit trail, as live processing does."""
    from shared import audit  # here: the audit module brings the web framework, ~0.3 s of CPU

    for erasure in erasures:
        await audit.record(
            session,
            erasure.actor,
            "lead.erase",
            erasure.cause,
            {"events": list(erasure.event_ids)},
        )


def _progress(out: TextIO) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        print(
            f"[replay] {done}/{total} records ({100 * done / max(total, 1):.0f}%)",
            file=out,
            flush=True,
        )

    return progress


async def _fold_topics(
    settings: ScoringSettings, rebuild: Rebuild, progress: Callable[[int, int], None]
) -> tuple[int, dict[tuple[str, int], int]]:
    """Read both topics to the end offsets they have now and fold every record as it comes;
    returns the records read and the next offset of each partition.

    The partitions are merged by Kafka time (ties by topic, partition, offset), each in its
    own order: live processing reads them side by side as the records arrive, so a handoff
    (sent after the activity that qualified its lead) meets the lead that activity made, and
    a person's later name meets the lead the earlier ones made. A record is folded only while
    every partition still being read has one buffered (the next by time may be in any of
    them); a partition that holds many while it waits is paused, so memory stays bounded.
    """
    consumer, starts = await open_history(
        settings,
        max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
        fetch_max_bytes=4 * FETCH_PARTITION_BYTES,
    )
    partitions = list(starts)
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        reading = {tp for tp in partitions if ends[tp] > starts[tp]}
        consumer.pause(*(set(partitions) - reading))
        buffers: dict[TopicPartition, deque[ReplayRecord]] = {tp: deque() for tp in partitions}
        heads: list[tuple[tuple[int, str, int, int], TopicPartition]] = []
        done, shown = 0, time.monotonic()
        progress(0, total)
        while reading or heads:
            if reading:
                fetched = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
                for tp, records in fetched.items():
                    buffer = buffers[tp]
                    was_empty = not buffer
                    buffer.extend(_decode(r) for r in records if r.offset < ends[tp])
                    if was_empty and buffer:
                        heapq.heappush(heads, (_order(buffer[0]), tp))
                    if records and records[-1].offset + 1 >= ends[tp]:
                        reading.discard(tp)
                        consumer.pause(tp)
                for tp in list(reading):  # ends reached past trailing control records
                    if tp not in fetched and await consumer.position(tp) >= ends[tp]:
                        reading.discard(tp)
                        consumer.pause(tp)
            # Only the partition just taken from can run dry, so one check before the loop and
            # one per record keep "every partition being read has a record buffered".
            draining = all(buffers[tp] for tp in reading)
            while heads and draining:
                _, tp = heapq.heappop(heads)
                buffer = buffers[tp]
                rebuild.apply(buffer.popleft())
                done += 1
                if buffer:
                    heapq.heappush(heads, (_order(buffer[0]), tp))
                elif tp in reading:
                    draining = False
                if done % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the fetcher reads the next records meanwhile
            for tp in reading:
                if len(buffers[tp]) >= BUFFERED_PER_PARTITION:
                    consumer.pause(tp)
                else:
                    consumer.resume(tp)
            if time.monotonic() - shown > 1:
                progress(done, total)
                shown = time.monotonic()
        progress(done, total)
        next_offsets = {
            (tp.topic, tp.partition): ends[tp] for tp in partitions if ends[tp] > starts[tp]
        }
        return done, next_offsets
    finally:
        await consumer.stop()


def _order(record: ReplayRecord) -> tuple[int, str, int, int]:
    return (record.timestamp_ms, record.topic, record.partition, record.offset)


def _decode(record: ConsumerRecord) -> ReplayRecord:
    """The record's event decoded as the live consumer decodes it (None: it would dead-letter)."""
    decoded = decode_record(record.value or b"")
    event, activity = decoded if decoded else (None, None)
    timestamp = record.timestamp
    return ReplayRecord(
        record.topic,
        record.partition,
        record.offset,
        timestamp or 0,
        received_us(timestamp),
        event,
        activity,
    )


async def replay_through_consumer(
    settings: ScoringSettings, publish: bool = False, out: TextIO = sys.stderr
) -> int:
    """Rebuild the projection through the live consumer loop and handler, batch by batch.

    The path of --publish: the outbox rows of the lifecycle events it re-derives are kept for
    the relay. Slower than the in-memory fold (a transaction per batch).
    """
    from services.scoring.app import scoring_handler  # the live handler, and its web app

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


def main(settings: ScoringSettings, publish: bool) -> int:
    """Entry point of `leadrouter scoring replay`: the process ends here once the replay has."""
    if publish:
        asyncio.run(replay(settings, publish))
        return 0
    gc.disable()  # for good: a collection would walk the fold, which lives to the end
    _total, _fold = asyncio.run(_replay(settings, sys.stderr))
    # The fold's millions of objects are still alive: freeing them one by one, and the
    # interpreter's final collection, took ~8% of the command's CPU. The projection is
    # committed and the output flushed, so the process ends without them (as mypy's does).
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
