"""Publishing requests' records: each request all of them or, as consumers see it, none.

With `LEADROUTER_KAFKA_TRANSACTIONS` (the default) requests are published by group commit:
concurrent requests join one Kafka transaction on one of a small pool of transactional
producers, and each request is answered only after the commit that holds its records. A
committer takes every request waiting when it becomes free (up to
`LEADROUTER_INGEST_TRANSACTION_MAX_RECORDS` records), so under load one transaction carries
many requests and the broker's per-transaction round trips (add partitions, commit) are paid
once for all of them; when idle a request is a transaction of its own at once.

A request is inside exactly one transaction, so it stays all or nothing. If a transaction
fails (a timeout, a Kafka error) it is aborted and every request in it gets PublishFailed (a
503): consumers read committed, so none of them sees any of it. If even the abort cannot
reach the broker, the producer is replaced by one with the same transactional id, whose
initialisation fences the old one and aborts its open transaction (the broker also aborts it
after `transaction_timeout_ms`). The replacement is started at once, in the background, and
retried until it has bootstrapped and holds its producer id: a group only ever uses a
started producer, and waits for it (within its time) rather than fail on one that has not
connected (right after Kafka came back from a pause, a producer used before it bootstrapped
failed every group at once with "Did we not perform bootstrap?"). A request still waiting
for a committer when its time is up is taken out of the queue, unsent, and fails the same way.

Without transactions the service's idempotent producer sends each request's records at once,
and a 503 may leave part of a request published.
"""

import asyncio
import logging
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from services.ingest.metrics import TRANSACTION_RECORDS, TRANSACTION_REQUESTS
from shared.kafka import client_options
from shared.logs import Outage
from shared.settings import IngestSettings

log = logging.getLogger(__name__)


class Record(NamedTuple):
    """One Kafka record of a request (an event or a DLQ copy).

    A named tuple: built once per event, where a frozen dataclass's __init__ cost a
    microsecond of ingest's CPU per event."""

    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


class PublishFailed(Exception):
    """Kafka did not acknowledge (or commit) the request's records in time."""


@dataclass(eq=False)
class _Waiting:
    """One request's records, queued for the next transaction; `done` holds its outcome."""

    records: Sequence[Record]
    queued_at: float
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def take_group(queue: deque[_Waiting], max_records: int) -> list[_Waiting]:
    """The requests of the next transaction, oldest first: at least one, then as many as fit."""
    group = [queue.popleft()]
    records = len(group[0].records)
    while queue and records + len(queue[0].records) <= max_records:
        records += len(queue[0].records)
        group.append(queue.popleft())
    return group


class RequestPublisher:
    """Sends a request's records and waits for Kafka to acknowledge (and commit) all of them."""

    def __init__(
        self,
        settings: IngestSettings,
        shared_producer: Callable[[], AIOKafkaProducer],
    ) -> None:
        self.settings = settings
        self.transactional = settings.kafka_transactions
        self._shared_producer = shared_producer
        instance = uuid.uuid4().hex[:12]
        # Unique per process: two ingest instances must never fence each other.
        self._ids = [
            f"{settings.topic_namespace}-ingest-{instance}-{n}"
            for n in range(settings.ingest_kafka_producers)
        ]
        self._queue: deque[_Waiting] = deque()
        self._work = asyncio.Event()
        # Committers take turns (a Semaphore wakes its waiters in order): under load the queue
        # fills while the transactions in flight finish, so each carries more requests, and the
        # producer of a finished transaction rests while the others work.
        self._in_flight = asyncio.Semaphore(settings.ingest_transactions_in_flight)
        # A slot's producer is here only once started; `_starting` holds the start under way.
        self._producers: dict[int, AIOKafkaProducer | None] = {}
        self._starting: dict[int, asyncio.Task[AIOKafkaProducer]] = {}
        self._start_outages: dict[int, Outage] = {}
        self._committers: list[asyncio.Task[None]] = []
        self._discarded: set[asyncio.Task[None]] = set()

    async def start(self, warm_up_s: float = 60.0) -> None:
        """Start the committers (a producer whose start fails is retried by its next group).

        A transactional producer's first transaction waits for the broker's transaction
        coordinator, which on a fresh cluster first creates its log: done here, at start-up,
        not within a request's time budget.
        """
        if not self.transactional:
            return
        for slot in range(len(self._ids)):
            self._producers[slot] = None
        await asyncio.gather(*(self._warm_up(slot, warm_up_s) for slot in self._producers))
        self._committers = [
            asyncio.create_task(self._commit_loop(slot), name=f"ingest-committer-{slot}")
            for slot in self._producers
        ]

    async def _warm_up(self, slot: int, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._transaction(slot, [])
        except Exception as exc:
            log.warning("ingest: transactional producer %d not ready at start-up: %r", slot, exc)
            await self._abort(slot)

    async def stop(self) -> None:
        """Fail what still waits, stop the committers and close every producer."""
        for waiting in self._queue:
            if not waiting.done.done():
                waiting.done.set_exception(PublishFailed("ingest is shutting down"))
        self._queue.clear()
        for task in self._committers:
            task.cancel()
        await asyncio.gather(*self._committers, return_exceptions=True)
        self._committers = []
        for task in self._starting.values():
            task.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        self._starting.clear()
        for slot, producer in self._producers.items():
            if producer is not None:
                await self._close(producer)
            self._producers[slot] = None
        if self._discarded:
            await asyncio.gather(*self._discarded, return_exceptions=True)

    async def publish(self, records: Sequence[Record]) -> None:
        """Send the records; return once Kafka acknowledged (and committed) all, else raise."""
        timeout_s = self.settings.kafka_publish_timeout_s
        if not self.transactional:
            await _bounded(self._send_each(self._shared_producer(), records), timeout_s)
            return
        if not self._committers:
            raise RuntimeError("the publisher is not started")
        waiting = _Waiting(records, time.monotonic())
        self._queue.append(waiting)
        self._work.set()
        # A timer rather than wait_for(shield(...)), which adds a future, a shield and their
        # callbacks per request: a request still queued when its time is up is taken out,
        # unsent; one already in a transaction gets that transaction's outcome (the
        # transaction is bounded by the same budget).
        expiry = asyncio.get_running_loop().call_later(timeout_s, self._expire, waiting)
        try:
            # Cancelling this request cancels only its own future: the committer skips it and
            # the transaction others share goes on.
            await waiting.done
        except asyncio.CancelledError:
            if waiting in self._queue:
                self._queue.remove(waiting)
            raise
        finally:
            expiry.cancel()

    def _expire(self, waiting: _Waiting) -> None:
        if waiting in self._queue and not waiting.done.done():  # never sent: nothing visible
            self._queue.remove(waiting)
            waiting.done.set_exception(
                PublishFailed(
                    f"no transaction took the request in {self.settings.kafka_publish_timeout_s}s"
                )
            )

    async def _commit_loop(self, slot: int) -> None:
        max_records = self.settings.ingest_transaction_max_records
        while True:
            while not self._queue:
                self._work.clear()
                await self._work.wait()
            async with self._in_flight:
                if not self._queue:  # another committer took it while this one waited its turn
                    continue
                group = take_group(self._queue, max_records)
                try:
                    await self._commit_group(slot, group)
                except Exception:  # the group has its answer (a 503); the committer goes on
                    log.exception("ingest: committer %d failed outside a transaction", slot)

    async def _commit_group(self, slot: int, group: list[_Waiting]) -> None:
        records = [r for waiting in group for r in waiting.records]
        # The oldest request has already waited: the transaction gets what is left of its time.
        waited_s = time.monotonic() - group[0].queued_at
        budget_s = max(1.0, self.settings.kafka_publish_timeout_s - waited_s)
        outcome: BaseException | None = None
        try:
            await _bounded(self._transaction(slot, records), budget_s)
        except asyncio.CancelledError:
            outcome = PublishFailed("ingest is shutting down")
            await self._abort(slot)
            raise
        except Exception as exc:  # a timeout or a Kafka error: nothing of the group commits
            # Set before aborting: whatever the abort does, no request of the group gets a 202.
            outcome = exc if isinstance(exc, PublishFailed) else PublishFailed(repr(exc))
            await self._abort(slot)
        finally:
            TRANSACTION_REQUESTS.observe(len(group))
            TRANSACTION_RECORDS.observe(len(records))
            for waiting in group:
                if waiting.done.done():
                    continue
                if outcome is None:
                    waiting.done.set_result(None)
                else:
                    waiting.done.set_exception(outcome)

    async def _transaction(self, slot: int, records: Sequence[Record]) -> None:
        producer = await self._ready(slot)
        await producer.begin_transaction()
        await self._send_batches(producer, records)
        await producer.commit_transaction()

    @staticmethod
    async def _send_each(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        """Send the records one by one on the shared producer, which batches concurrent
        requests' records together, and wait for every acknowledgement."""
        acks = [
            await producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*acks)

    @staticmethod
    async def _send_batches(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        """Send a transaction's records in one batch per partition and wait for every
        acknowledgement.

        The whole group is at hand, so its batches are built here: about half the CPU per
        record of `send()`'s (measured 13 -> 7 µs). Records go to the partitions `send()`
        would pick (its default partitioner's hash, over the topic's sorted partitions), in
        order.
        """
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], BatchBuilder] = {}
        acks = []
        for record in records:
            if record.topic not in partitions:
                partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            every = partitions[record.topic]
            where = (record.topic, every[(murmur2(record.key) & 0x7FFFFFFF) % len(every)])
            batch = batches.get(where) or batches.setdefault(where, producer.create_batch())
            if _append(batch, record) is None:  # full: send it, go on in a new one
                acks.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = producer.create_batch()
                if _append(batch, record) is None:
                    raise PublishFailed(f"a record of {len(record.value)} bytes fits no batch")
        for (topic, partition), batch in batches.items():
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*acks)

    async def _abort(self, slot: int) -> None:
        """Abort the slot's open transaction, or give the slot a fresh producer."""
        producer = self._producers[slot]
        if producer is None:
            return
        # aiokafka has no public "in a transaction?" question; its manager answers it.
        if not producer._txn_manager or not producer._txn_manager.is_in_transaction():
            # Failed before its transaction began (start, or waiting for the coordinator).
            self._discard(slot, producer)
            return
        try:
            await _bounded(producer.abort_transaction(), min(5.0, self._abort_budget_s()))
            return
        except Exception as exc:  # broker unreachable, or the producer is in a fatal state
            log.warning("ingest: could not abort a Kafka transaction (%s); replacing producer", exc)
        self._discard(slot, producer)

    def _discard(self, slot: int, producer: AIOKafkaProducer) -> None:
        self._producers[slot] = None  # the next one, same id, fences it and aborts its txn
        task = asyncio.create_task(self._close(producer))
        self._discarded.add(task)
        task.add_done_callback(self._discarded.discard)
        self._replacement(slot)  # started now, so the next group finds it connected

    async def _ready(self, slot: int) -> AIOKafkaProducer:
        """The slot's started producer, waiting for its start (or replacement) if under way."""
        producer = self._producers[slot]
        if producer is not None:
            return producer
        # Shielded: a group whose time runs out leaves the start going for the next group (the
        # start never fails, it retries, so no error is left unretrieved).
        return await asyncio.shield(self._replacement(slot))

    def _replacement(self, slot: int) -> "asyncio.Task[AIOKafkaProducer]":
        """The start of the slot's next producer, begun now unless one is under way."""
        task = self._starting.get(slot)
        if task is None or task.done():
            task = asyncio.create_task(
                self._start_producer(slot), name=f"ingest-producer-{slot}-start"
            )
            self._starting[slot] = task
        return task

    async def _start_producer(self, slot: int) -> AIOKafkaProducer:
        """Start a producer for the slot, trying again with backoff until it has bootstrapped
        and initialised its transactional id; then it is the slot's producer."""
        outage = self._start_outages.setdefault(
            slot, Outage(log, f"ingest: transactional producer {slot} start")
        )
        delay_s = 0.1
        while True:
            producer = self._make(slot)
            try:
                # aiokafka's start retries the coordinator lookup for ever: bounded per try.
                async with asyncio.timeout(max(5.0, self.settings.kafka_publish_timeout_s)):
                    await producer.start()
            except asyncio.CancelledError:
                self._discard_unstarted(producer)
                raise
            except Exception as exc:  # Kafka away, or metadata without brokers yet
                outage.failed(exc)
                self._discard_unstarted(producer)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            outage.recovered()
            self._producers[slot] = producer
            return producer

    def _discard_unstarted(self, producer: AIOKafkaProducer) -> None:
        task = asyncio.create_task(self._close(producer))
        self._discarded.add(task)
        task.add_done_callback(self._discarded.discard)

    def _abort_budget_s(self) -> float:
        return max(1.0, self.settings.kafka_publish_timeout_s / 2)

    def _make(self, slot: int) -> AIOKafkaProducer:
        timeout_ms = int(self.settings.kafka_publish_timeout_s * 1000)
        return AIOKafkaProducer(
            **client_options(self.settings),
            acks="all",
            enable_idempotence=True,
            transactional_id=self._ids[slot],
            # An abandoned transaction blocks read-committed consumers until the broker
            # aborts it: keep that short, but longer than any request may take.
            transaction_timeout_ms=max(10_000, 2 * timeout_ms),
            # The group is sent all at once and then committed: lingering would only delay it.
            linger_ms=0,
            max_batch_size=_MAX_BATCH_BYTES,
            request_timeout_ms=timeout_ms,
            client_id="leadrouter-ingest",
        )

    async def _close(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=self._abort_budget_s())
        except Exception as exc:
            log.warning("ingest: a Kafka producer did not close cleanly: %s", exc)


_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORDS: dict[int, struct.Struct] = {}


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of a record key, as aiokafka.partitioner.murmur2 (the default
    partitioner's) computes it: the key's words unpacked at once, about a third of the CPU of
    aiokafka's byte-by-byte loop (tests/unit/test_ingest_publisher.py checks they agree)."""
    length = len(key)
    words = length >> 2
    unpack = _WORDS.get(words)
    if unpack is None:
        unpack = _WORDS[words] = struct.Struct(f"<{words}I")
    h = 0x9747B28C ^ length
    for k in unpack.unpack_from(key):
        k = (k * _M) & _U32
        k = ((k ^ (k >> 24)) * _M) & _U32
        h = ((h * _M) & _U32) ^ k
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= key[base + 2] << 16
        if tail >= 2:
            h ^= key[base + 1] << 8
        h = ((h ^ key[base]) * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    return h ^ (h >> 15)


def _append(batch: BatchBuilder, record: Record) -> Any:
    """Add the record to the batch; None when the batch is full."""
    return batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)


# A group of many requests is hundreds of KB: a few large batches per partition, not dozens.
_MAX_BATCH_BYTES = 262_144


async def _bounded(work: Awaitable[Any], timeout_s: float) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except (KafkaError, TimeoutError) as exc:
        raise PublishFailed(str(exc) or exc.__class__.__name__) from exc
