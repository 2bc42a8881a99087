"""Publishing one request's records: all of them or, as consumers see it, none.

With `LEADROUTER_KAFKA_TRANSACTIONS` (the default) each request is one Kafka transaction on
one of a small pool of transactional producers; consumers read committed, so a request
answered 503 never reaches them: on a timeout or an error the transaction is aborted, and if
even the abort cannot reach the broker, the producer is replaced by one with the same
transactional id, whose initialisation fences the old one and aborts its open transaction
(the broker also aborts it after `transaction_timeout_ms`). Without transactions the
service's idempotent producer is used and a 503 may leave part of a request published.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.kafka import client_options
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One Kafka record of a request (an event or a DLQ copy)."""

    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


class PublishFailed(Exception):
    """Kafka did not acknowledge (or commit) the request's records in time."""


class RequestPublisher:
    """Sends a request's records and waits for Kafka to acknowledge all of them."""

    def __init__(
        self,
        settings: Settings,
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
        self._idle: asyncio.Queue[int] = asyncio.Queue()
        self._producers: dict[int, AIOKafkaProducer | None] = {}
        self._discarded: set[asyncio.Task[None]] = set()

    async def start(self, warm_up_s: float = 60.0) -> None:
        """Start the pool's producers (a slot whose start fails retries on its next request).

        A transactional producer's first transaction waits for the broker's transaction
        coordinator, which on a fresh cluster first creates its log: done here, at start-up,
        not within a request's time budget.
        """
        for slot in range(len(self._ids)):
            self._producers[slot] = None
            self._idle.put_nowait(slot)
        if self.transactional:
            await asyncio.gather(*(self._warm_up(slot, warm_up_s) for slot in self._producers))

    async def _warm_up(self, slot: int, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._transaction(slot, [])
        except Exception as exc:
            log.warning("ingest: transactional producer %d not ready at start-up: %r", slot, exc)
            await self._abort(slot)

    async def stop(self) -> None:
        """Close every transactional producer."""
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
            await _bounded(self._send_all(self._shared_producer(), records), timeout_s)
            return
        if not self._producers:
            raise RuntimeError("the publisher is not started")
        slot = await self._idle.get()
        try:
            await _bounded(self._transaction(slot, records), timeout_s)
        except BaseException:  # a timeout, a Kafka error, or the request cancelled mid-way
            await self._abort(slot)
            raise
        finally:
            self._idle.put_nowait(slot)

    async def _transaction(self, slot: int, records: Sequence[Record]) -> None:
        producer = self._producers[slot]
        if producer is None:
            producer = self._producers[slot] = self._make(slot)
            await producer.start()
        await producer.begin_transaction()
        await self._send_all(producer, records)
        await producer.commit_transaction()

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        acks = [
            await producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
            for r in records
        ]
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
            linger_ms=2,
            request_timeout_ms=timeout_ms,
            client_id="leadrouter-ingest",
        )

    async def _close(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=self._abort_budget_s())
        except Exception as exc:
            log.warning("ingest: a Kafka producer did not close cleanly: %s", exc)


async def _bounded(work: Awaitable[Any], timeout_s: float) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except (KafkaError, TimeoutError) as exc:
        raise PublishFailed(str(exc) or exc.__class__.__name__) from exc
