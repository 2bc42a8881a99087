"""The consumer's upkeep beside its loop: lag, offsets past transaction markers, pruning.

`maintain()` measures lag (end offsets minus the offsets stored in Postgres, for every
partition of the group's topics, so it grows while processing is stuck), prunes processed
event ids older than the dedup window, runs the subscription's retention jobs and sends the
advisory commits. A transaction's commit marker takes an offset after its last record: the
member that owns a partition moves the stored offset past markers it has read beyond its last
record, so an idle group that is caught up reads a lag of 0.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import ColumnElement, and_, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db import consumer_offsets, processed_events

log = logging.getLogger("shared.consumer")

# Only forward, only from an offset at or past the last record this member was handed (so
# everything before the position is processed), and never past where a batch stored it since.
STORE_PAST_MARKERS = text(
    "update consumer_offsets set next_offset = :position, updated_at = now()"
    " where consumer_group = :group and topic = :topic and partition = :partition"
    " and next_offset >= :processed_through and next_offset < :position"
)


class ConsumerUpkeep:
    """What TransactionalConsumer does beside processing (the attributes are its own)."""

    name: str
    group_id: str
    topics: list[str]
    consumer: AIOKafkaConsumer
    _sessions: async_sessionmaker[AsyncSession]
    _bootstrap: str | Mapping[str, Any]
    _standalone: bool
    _started: asyncio.Event
    _stored: dict[TopicPartition, int]
    _fetched_to: dict[TopicPartition, int]

    async def commit_advisory(self, wait_s: float = 5.0) -> None:
        raise NotImplementedError

    async def maintain(
        self,
        lag_interval_s: float = 5.0,
        dedup_window_s: float | None = None,
        retention: Sequence[Callable[[], Awaitable[int]]] = (),
    ) -> None:
        """Measure lag every `lag_interval_s`, prune processed ids and run the `retention` jobs,
        beside the loop, forever.

        Independent of processing: while a batch is stuck (Postgres down, a slow handler)
        the stored offsets stand still and the end offsets grow, so the lag does too.
        """
        await self._started.wait()
        partitions: list[TopicPartition] = []
        prune_every_s = min(3600.0, dedup_window_s / 4) if dedup_window_s else None
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not partitions:
                    partitions = await partitions_of(self._bootstrap, self.topics)
                await self.commit_advisory()
                await self.observe_lag(partitions)
                if prune_every_s and dedup_window_s and loop.time() >= next_prune:
                    await self.prune_processed_ids(dedup_window_s)
                    for job in retention:
                        await job()
                    next_prune = loop.time() + prune_every_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loops' own outage lines tell the story
                log.debug("%s: lag or pruning skipped: %s", self.name, exc)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a library swallowed it; stop as asked
            await asyncio.sleep(lag_interval_s)

    async def observe_lag(self, partitions: Sequence[TopicPartition]) -> None:
        """Set the lag gauge: end offsets minus stored offsets (last known if Postgres is away).

        End offsets are last stable offsets (the consumer reads committed). Before reading the
        stored offsets, the partitions this member owns and has processed to the end of what
        it read are stored at its position, past trailing transaction markers.
        """
        try:
            await self.store_past_markers()
        except Exception as exc:  # a position being reset, Postgres away: next time
            log.debug("%s: offsets not moved past markers: %s", self.name, exc)
        try:
            async with self._sessions() as session:
                self._stored = await stored_offsets(
                    session, self.group_id, consumer_offsets.c.topic.in_(self.topics)
                )
        except Exception as exc:
            # Nothing commits while Postgres is away, so the last stored offsets still hold.
            log.debug("%s: stored offsets unreadable, using the last known: %s", self.name, exc)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that arrives as the inner call completes, and shutdown then waits for ever.
        async with asyncio.timeout(10):
            ends = await self.consumer.end_offsets(list(partitions))
            missing = [tp for tp in partitions if tp not in self._stored]
            starts = await self.consumer.beginning_offsets(missing) if missing else {}
        for tp in partitions:
            stored = self._stored.get(tp, starts.get(tp, 0))
            metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                max(ends[tp] - stored, 0)
            )

    async def store_past_markers(self) -> int:
        """Store the position of owned partitions whose records are all processed; returns
        how many moved.

        The consumer's position is past every record getmany() returned and past the commit
        markers and aborted batches it skipped. When everything returned is stored (the
        stored offset is at least where the last returned record ends), what lies between
        the stored offset and the position is no record at all, so storing the position
        skips nothing; the update only moves an offset forward from that point, so it never
        races a batch committing meanwhile.
        """
        if self._standalone:
            return 0
        moves: list[tuple[TopicPartition, int, int]] = []
        for tp in list(self.consumer.assignment()):
            async with asyncio.timeout(1):
                position = await self.consumer.position(tp)
            # Read right after position() returned, with no await between: consistent.
            processed_through = self._fetched_to.get(tp, 0)
            known = self._stored.get(tp)
            # Records handed out and not yet stored: a batch is in hand (or stuck), no marker.
            if known is not None and processed_through <= known < position:
                moves.append((tp, processed_through, position))
        if not moves:
            return 0
        moved = 0
        async with self._sessions() as session, session.begin():
            # A batch holding the row (a stuck transaction) must not hold the lag measurement.
            await session.execute(text("set local lock_timeout = '1s'"))
            for tp, processed_through, position in moves:
                result = await session.execute(
                    STORE_PAST_MARKERS,
                    {
                        "group": self.group_id,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "processed_through": processed_through,
                        "position": position,
                    },
                )
                moved += result.rowcount  # type: ignore[attr-defined]
        return moved

    async def prune_processed_ids(self, older_than_s: float, batch: int = 10_000) -> int:
        """Forget processed ids older than the dedup window whose offsets are committed.

        An id is kept, whatever its age, while the stored offset of its partition is not past
        it (offsets rewound by hand could redeliver it). Returns how many were deleted.
        """
        committed = (
            select(consumer_offsets.c.next_offset)
            .where(
                consumer_offsets.c.consumer_group == processed_events.c.consumer_group,
                consumer_offsets.c.topic == processed_events.c.topic,
                consumer_offsets.c.partition == processed_events.c.partition,
            )
            .scalar_subquery()
        )
        cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
        total = 0
        while True:
            async with self._sessions() as session, session.begin():
                doomed = (
                    select(processed_events.c.event_id)
                    .where(
                        processed_events.c.consumer_group == self.group_id,
                        processed_events.c.processed_at < cutoff,
                        # Ids from before offsets were recorded with them: age alone decides.
                        (processed_events.c.kafka_offset.is_(None))
                        | (processed_events.c.kafka_offset < committed),
                    )
                    .limit(batch)
                    .scalar_subquery()
                )
                result = await session.execute(
                    delete(processed_events)
                    .where(
                        and_(
                            processed_events.c.consumer_group == self.group_id,
                            processed_events.c.event_id.in_(doomed),
                        )
                    )
                    .returning(processed_events.c.event_id)
                )
                deleted = len(result.all())
            total += deleted
            metrics.PROCESSED_IDS_PRUNED.labels(self.name).inc(deleted)
            if deleted < batch:
                break
        if total:
            log.info("%s: pruned %d processed event ids past the dedup window", self.name, total)
        return total


def _options(bootstrap: str | Mapping[str, Any]) -> dict[str, Any]:
    """Client options from shared.kafka.client_options, or a plain bootstrap string."""
    return {"bootstrap_servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap)


async def stored_offsets(
    session: AsyncSession, group_id: str, which: ColumnElement[bool]
) -> dict[TopicPartition, int]:
    """The next offsets a group stored with its projection, for the partitions `which` picks."""
    rows = await session.execute(
        select(
            consumer_offsets.c.topic, consumer_offsets.c.partition, consumer_offsets.c.next_offset
        ).where(consumer_offsets.c.consumer_group == group_id, which)
    )
    return {TopicPartition(r.topic, r.partition): r.next_offset for r in rows}


async def partitions_of(
    bootstrap: str | Mapping[str, Any], topics: Sequence[str]
) -> list[TopicPartition]:
    """Every partition of these topics, from the cluster's metadata."""
    admin = AIOKafkaAdminClient(**_options(bootstrap))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    )
