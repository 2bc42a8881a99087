"""The one consumer loop: projection, processed ids and offsets commit in one Postgres transaction.

On partition assignment the consumer seeks to the offsets stored in Postgres (aiokafka's
"storing offsets outside Kafka"), so Kafka's own commits are only advisory. Records that
cannot be decoded, fail with an error retrying cannot fix (`shared.errors.is_retryable`:
validation errors, unknown event types, domain refusals) or keep failing go to
`<topic>.dlq` through the outbox, in the same transaction that moves the offset past them,
and the partition moves on. A database outage is not the record's fault: it is retried
until the database returns, logged once per state change.

Beside the processing loop runs its upkeep (lag, offsets past transaction markers, pruning,
advisory commits): shared/consumer_upkeep.py.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.consumer_upkeep import ConsumerUpkeep, _options, partitions_of, stored_offsets
from shared.db import consumer_offsets, driver_connection
from shared.errors import is_retryable
from shared.events import CloudEvent
from shared.heap import collector_paused
from shared.kafka import dlq
from shared.logs import Outage
from shared.outbox import add_raw

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 20

# One fixed statement per batch: arrays instead of one parameter set per id, so it is prepared
# once and costs no per-row statement building; sent straight to asyncpg on the session's
# connection (the handler's statements follow in the same transaction).
CLAIM_IDS_AND_STORE_OFFSET = (
    "with stored as ("
    " insert into consumer_offsets (consumer_group, topic, partition, next_offset)"
    " values ($1, $2, $3, $4)"
    " on conflict (consumer_group, topic, partition) do update"
    " set next_offset = excluded.next_offset, updated_at = excluded.updated_at)"
    " insert into processed_events (consumer_group, event_id, topic, partition, kafka_offset)"
    " select $1, id, $2, $3, o"
    " from unnest($5::text[], $6::bigint[]) as t(id, o)"
    " on conflict do nothing returning event_id"
)


@dataclass(frozen=True)
class Delivered:
    """A decoded event with where it came from."""

    event: CloudEvent
    topic: str
    partition: int
    offset: int
    # The record's Kafka timestamp: when the producer (ingest) sent it; the same in a replay.
    received_at: datetime | None = None


BatchHandler = Callable[[AsyncSession, Sequence[Delivered]], Awaitable[None]]


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(self, loop: "TransactionalConsumer") -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # nothing in flight: batches are processed between getmany() calls

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._loop.seek_to_stored(assigned)


class TransactionalConsumer(ConsumerUpkeep):
    """Consumes topics as one group and hands decoded batches to a handler inside a transaction."""

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        topics: Sequence[str],
        bootstrap: str | Mapping[str, Any],
        sessions: async_sessionmaker[AsyncSession],
        handler: BatchHandler,
        relay: str,
        on_commit: Callable[[], None] = lambda: None,
        batch_max: int = 500,
        poll_timeout_ms: int = 500,
        max_retries: int = 3,
        standalone: bool = False,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self.topics = list(topics)
        self._sessions = sessions
        self._handler = handler
        self._relay = relay
        self._on_commit = on_commit
        self._batch_max = batch_max
        self._poll_timeout_ms = poll_timeout_ms
        self._max_retries = max_retries
        self._stopping = asyncio.Event()
        self.joined = False  # True once the group gave this member its partitions
        self._standalone = standalone
        self._bootstrap = bootstrap
        self.database_outage = Outage(log, f"{name} consumer: database")
        self.loop_outage = Outage(log, f"{name} consumer loop")
        self._stored: dict[TopicPartition, int] = {}  # last offsets read from Postgres
        # Where the last getmany() left each partition's fetch position: a committed batch
        # that ends there needs no seek (a seek drops the records the fetcher prefetched).
        self._fetched_to: dict[TopicPartition, int] = {}
        # Offsets committed to Postgres and not yet to Kafka (advisory, sent by maintain()).
        self._advisory: dict[TopicPartition, int] = {}
        self._advisory_in_flight: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        # Export every outcome at 0 from the start, so increase() sees the first dead letter.
        for topic in self.topics:
            for outcome in ("processed", "duplicate", "dead_lettered"):
                metrics.CONSUMED_EVENTS.labels(name, topic, outcome)
        self.consumer = AIOKafkaConsumer(
            **_options(bootstrap),
            # Standalone (replay): read every partition without joining the live group.
            group_id=None if standalone else group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            client_id=f"leadrouter-{name}",
            # aiokafka sends a node one fetch at a time, and partitions whose records wait in
            # the buffer are left out of it: a long poll for the idle ones (the default 500 ms)
            # held back the next records of the busy ones by up to that much.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )

    @property
    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now."""
        return set(self.consumer.assignment())

    async def start(self) -> None:
        """Join the group; partitions are assigned on the first poll."""
        await self.consumer.start()
        self._started.set()
        if not self._standalone:
            self.consumer.subscribe(self.topics, listener=_SeekToStoredOffsets(self))
            return
        partitions = await partitions_of(self._bootstrap, self.topics)
        self.consumer.assign(partitions)
        await self.seek_to_stored(partitions)

    async def stop(self) -> None:
        """Leave the group."""
        await self.commit_advisory()
        in_flight = self._advisory_in_flight
        if in_flight is not None and not in_flight.done():
            # Kafka away at shutdown: leaving the group ends the commit too.
            in_flight.cancel()
        await self.consumer.stop()

    async def commit_advisory(self, wait_s: float = 5.0) -> None:
        """Tell Kafka the offsets stored with the projection, so its tooling shows the lag.

        Advisory only (the truth is in consumer_offsets), so it is sent from maintain(), off
        the processing path: awaited after each batch it was one more broker round trip
        before the next batch and before the outbox relay was woken. A commit that outlasts
        `wait_s` (Kafka away) is left to finish rather than cancelled: aiokafka shields its
        request, and a cancelled commit left that request's error ("Task exception was never
        retrieved ... UnknownMemberIdError") to asyncio's error log when Kafka came back. Its
        outcome is logged by `_advisory_done`; the offsets are sent again with the next one.
        """
        if self._advisory_in_flight is not None:
            if not self._advisory_in_flight.done():
                return  # the previous commit still waits for Kafka: these go with the next
            self._advisory_in_flight = None
        pending = {tp: o for tp, o in self._advisory.items() if tp in self.consumer.assignment()}
        self._advisory.clear()
        if not pending:
            return
        task = asyncio.create_task(
            self.consumer.commit(pending), name=f"{self.name}-advisory-commit"
        )
        task.add_done_callback(self._advisory_done)
        self._advisory_in_flight = task
        await asyncio.wait([task], timeout=wait_s)

    def _advisory_done(self, task: "asyncio.Task[None]") -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, CommitFailedError | KafkaError):
            # Expected after a rebalance or while Kafka was away; the stored offsets hold.
            log.info(
                "%s: advisory offset commit not taken (%s); the offsets stored with the "
                "projection are the truth, the next commit sends them again",
                self.name,
                exc.__class__.__name__,
            )
        else:
            log.warning("%s: advisory offset commit failed: %r", self.name, exc)

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        """Position each partition at the offset stored with the projection, or at its start."""
        if not partitions:
            return
        async with self._sessions() as session:
            stored = await stored_offsets(
                session,
                self.group_id,
                tuple_(consumer_offsets.c.topic, consumer_offsets.c.partition).in_(
                    [(tp.topic, tp.partition) for tp in partitions]
                ),
            )
        for tp in partitions:
            if tp in stored:
                self.consumer.seek(tp, stored[tp])
            else:
                await self.consumer.seek_to_beginning(tp)
            self._fetched_to.pop(tp, None)
        log.info("%s assigned %s, stored offsets %s", self.name, sorted(partitions), stored)
        self.joined = True

    async def catch_up(
        self, progress: Callable[[int, int], None] = lambda done, total: None
    ) -> int:
        """Process every assigned partition up to the end it had when called; returns its size.

        For a standalone consumer (a replay): `progress(done, total)` is called about once a
        second with the records processed so far.
        """
        partitions = sorted(self.consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        ends: dict[TopicPartition, int] = await self.consumer.end_offsets(partitions)
        total = sum(ends.values())
        last_report = 0.0
        while True:
            positions = {tp: await self.consumer.position(tp) for tp in partitions}
            done = sum(min(positions[tp], ends[tp]) for tp in partitions)
            finished = all(positions[tp] >= ends[tp] for tp in partitions)
            if finished or time.monotonic() - last_report > 1:
                progress(done, total)
                last_report = time.monotonic()
            if finished:
                return total
            await self._process_fetched()

    def request_stop(self) -> None:
        """Finish the batch in hand, then return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll and process until stopped; after a failure, resume from the stored offsets."""
        while not self._stopping.is_set():
            try:
                await self._process_fetched()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kafka or Postgres away: one line when it starts, then a periodic summary.
                self.loop_outage.failed(exc)
                # The fetch position is past the batch that failed: never poll on before
                # rewinding to the stored offsets, or that batch is skipped for good.
                while not self._stopping.is_set():
                    await asyncio.sleep(1.0)
                    try:
                        await self.seek_to_stored(list(self.consumer.assignment()))
                        break
                    except Exception as seek_exc:
                        self.database_outage.failed(seek_exc)
            else:
                self.loop_outage.recovered()

    async def _process_fetched(self) -> None:
        """Take what the fetcher has buffered and process each partition's share side by side.

        Up to `batch_max` records per partition per transaction (not in total, which left
        four partitions with a quarter each); the partitions' transactions run concurrently,
        so one's Postgres round trips overlap another's CPU work, as separate instances would.
        """
        assigned = max(len(self.consumer.assignment()), 1)
        batches = await self.consumer.getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._batch_max * assigned
        )
        for tp, records in batches.items():
            self._fetched_to[tp] = records[-1].offset + 1
        if len(batches) == 1:
            [(tp, records)] = batches.items()
            await self._process_in_batches(tp, records)
            return
        async with asyncio.TaskGroup() as group:
            for tp, records in batches.items():
                group.create_task(self._process_in_batches(tp, records))

    async def _process_in_batches(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for start in range(0, len(records), self._batch_max):
            await self.process(tp, records[start : start + self._batch_max])

    async def process(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Process one partition's batch in one transaction; isolate and dead-letter poison."""
        started = time.perf_counter()
        tries = 1 if len(records) > 1 else self._max_retries + 1
        error = await self._attempt(tp, records, tries)
        if error is not None:
            if len(records) > 1:
                # Split the batch so only the failing record is dead-lettered.
                for record in records:
                    await self.process(tp, [record])
                return
            await self._dead_letter(tp, records[0], error)
        metrics.CONSUMER_BATCH_SIZE.labels(self.name).observe(len(records))
        metrics.CONSUMER_BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        self._on_commit()

    async def _attempt(
        self, tp: TopicPartition, records: list[ConsumerRecord], tries: int
    ) -> str | None:
        """Commit the batch, retrying; returns the error once it is clearly the records' fault.

        That is at once for an error retrying cannot fix, after `tries` failures for others.
        Infrastructure errors (Postgres unreachable) are retried without limit: they say
        nothing about the record, and dead-lettering a healthy stream would lose it.
        """
        failures, delay_s = 0, 0.1
        while True:
            try:
                await self._commit_batch(tp, records)
                self.database_outage.recovered()
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:500]
                if _is_transient(exc):
                    self.database_outage.failed(exc)
                elif not is_retryable(exc):
                    log.warning(
                        "%s: %d record(s) on %s cannot succeed: %s",
                        self.name,
                        len(records),
                        tp,
                        error,
                    )
                    return error
                else:
                    failures += 1
                    log.warning(
                        "%s: %d record(s) on %s failed (try %d of %d): %s",
                        self.name,
                        len(records),
                        tp,
                        failures,
                        tries,
                        error,
                    )
                    if failures >= tries:
                        return error
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _commit_batch(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        with collector_paused():  # shared/heap.py: the batch's objects die with it
            await self._commit_batch_in_hand(tp, records)

    async def _commit_batch_in_hand(
        self, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        decoded: list[Delivered] = []
        undecodable: list[tuple[ConsumerRecord, str]] = []
        for record in records:
            try:
                event = CloudEvent.from_bytes(record.value or b"")
            except ValueError as exc:
                undecodable.append((record, f"undecodable: {exc.__class__.__name__}: {exc}"[:500]))
                continue
            sent = (
                datetime.fromtimestamp(record.timestamp / 1000, UTC)
                if record.timestamp is not None and record.timestamp >= 0
                else None
            )
            decoded.append(Delivered(event, record.topic, record.partition, record.offset, sent))

        async with self._sessions() as session, session.begin():
            # The offset goes first, with the ids: nothing commits unless all of it does.
            fresh = await self._claim_new_ids(session, tp, decoded, records[-1].offset + 1)
            if fresh:
                await self._handler(session, fresh)
            for record, reason in undecodable:
                await self._write_dead_letter(session, record, reason)

        duplicates = len(decoded) - len(fresh)
        metrics.CONSUMED_EVENTS.labels(self.name, tp.topic, "processed").inc(len(fresh))
        if duplicates:
            metrics.CONSUMED_EVENTS.labels(self.name, tp.topic, "duplicate").inc(duplicates)
        if undecodable:
            metrics.CONSUMED_EVENTS.labels(self.name, tp.topic, "dead_lettered").inc(
                len(undecodable)
            )
        next_offset = records[-1].offset + 1
        if tp not in self.consumer.assignment():
            return  # revoked while the batch committed: the new owner seeks to the stored offset
        if not self._standalone:
            self._advisory[tp] = next_offset
        if self._fetched_to.get(tp, -1) < next_offset:
            # Records handed in from elsewhere, or a rebalance seeked back meanwhile.
            self.consumer.seek(tp, next_offset)

    async def _claim_new_ids(
        self, session: AsyncSession, tp: TopicPartition, decoded: list[Delivered], next_offset: int
    ) -> list[Delivered]:
        """Store the partition's next offset, record the batch's event ids as processed, and
        return the events not seen before, in order (one statement, one round trip)."""
        unique: dict[str, Delivered] = {}
        for d in decoded:
            unique.setdefault(d.event.id, d)
        driver = await driver_connection(session)
        inserted = await driver.fetch(
            CLAIM_IDS_AND_STORE_OFFSET,
            self.group_id,
            tp.topic,
            tp.partition,
            next_offset,
            list(unique),
            [d.offset for d in unique.values()],
        )
        new_ids = {row[0] for row in inserted}
        return [d for i, d in unique.items() if i in new_ids]

    async def _store_offset(
        self, session: AsyncSession, tp: TopicPartition, next_offset: int
    ) -> None:
        stmt = pg_insert(consumer_offsets).values(
            consumer_group=self.group_id,
            topic=tp.topic,
            partition=tp.partition,
            next_offset=next_offset,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["consumer_group", "topic", "partition"],
                set_={
                    "next_offset": stmt.excluded.next_offset,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    async def _write_dead_letter(
        self, session: AsyncSession, record: ConsumerRecord, reason: str
    ) -> None:
        await add_raw(
            session,
            self._relay,
            dlq(record.topic),
            (record.key or b"").decode(errors="replace"),
            record.value or b"",
            {
                "leadrouter-error": reason,
                "leadrouter-consumer": self.name,
                "leadrouter-original-topic": record.topic,
                "leadrouter-original-partition": str(record.partition),
                "leadrouter-original-offset": str(record.offset),
            },
        )

    async def _dead_letter(self, tp: TopicPartition, record: ConsumerRecord, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            # A record read again after it was dead-lettered (a rebalance that seeked to the
            # stored offset while the dead letter was committing) is not sent twice: the
            # stored offset, locked, says whether it is past this record already.
            stored = await session.scalar(
                select(consumer_offsets.c.next_offset)
                .where(
                    consumer_offsets.c.consumer_group == self.group_id,
                    consumer_offsets.c.topic == tp.topic,
                    consumer_offsets.c.partition == tp.partition,
                )
                .with_for_update()
            )
            if stored is not None and stored > record.offset:
                log.info("%s: %s@%d was dead-lettered already", self.name, tp, record.offset)
                return
            await self._write_dead_letter(session, record, reason)
            await self._store_offset(session, tp, record.offset + 1)
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, record.offset + 1)
        metrics.CONSUMED_EVENTS.labels(self.name, tp.topic, "dead_lettered").inc()
        log.error("%s sent %s@%d to the DLQ: %s", self.name, tp, record.offset, reason)


# SQLSTATEs of the database, not of the record: connection exceptions (class 08), the server
# shutting down or starting (57P01-57P03), deadlock and serialization failure (another
# instance held the same rows).
TRANSIENT_SQLSTATES = {"57P01", "57P02", "57P03", "40P01", "40001"}


def _is_transient(exc: BaseException) -> bool:
    """True for errors of the infrastructure rather than of the record being processed."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    # The driver's own error sits below SQLAlchemy's wrapper (orig, __cause__).
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str) and (code.startswith("08") or code in TRANSIENT_SQLSTATES):
            return True
        if isinstance(seen, OSError | TimeoutError | ConnectionError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
