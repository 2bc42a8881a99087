"""The transactional outbox: rows written with a state change, published to Kafka by one relay."""

import asyncio
import logging
import zlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.db import outbox
from shared.events import CONTENT_TYPE, CloudEvent
from shared.wakeup import sleep_until_woken

log = logging.getLogger(__name__)


async def add_event(
    session: AsyncSession,
    relay: str,
    topic: str,
    event: CloudEvent,
    headers: dict[str, str] | None = None,
) -> None:
    """Queue a CloudEvent for publication, keyed by its subject, in the caller's transaction."""
    await add_events(session, relay, topic, [event], headers)


async def add_events(
    session: AsyncSession,
    relay: str,
    topic: str,
    events: Sequence[CloudEvent],
    headers: dict[str, str] | None = None,
) -> None:
    """Queue many CloudEvents in one statement (a batch's events cost one round trip)."""
    if events:
        await session.execute(
            insert(outbox),
            [_row(relay, topic, e.subject, e.to_bytes(), headers) for e in events],
        )


async def add_raw(
    session: AsyncSession,
    relay: str,
    topic: str,
    key: str,
    value: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    """Queue raw bytes for publication (used for DLQ copies of undecodable records)."""
    await session.execute(insert(outbox).values(_row(relay, topic, key, value, headers)))


def _row(
    relay: str, topic: str, key: str, value: bytes, headers: dict[str, str] | None
) -> dict[str, Any]:
    return {
        "relay": relay,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": {"content-type": CONTENT_TYPE, **(headers or {})},
    }


class OutboxRelay:
    """Publishes one relay's outbox rows in id order and deletes them once Kafka acknowledged."""

    def __init__(
        self,
        relay: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        batch_max: int = 500,
        idle_poll_s: float = 0.5,
    ) -> None:
        self.relay = relay
        self._sessions = sessions
        self._producer = producer
        self._batch_max = batch_max
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        # One advisory lock per relay keeps a single publisher at a time, so per-key order holds.
        self._lock_key = zlib.crc32(f"outbox:{relay}".encode())

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled; sleeps until woken or the idle poll interval passes."""
        while True:
            try:
                published = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay %s failed; retrying", self.relay)
                published = 0
                await asyncio.sleep(1.0)
            if published < self._batch_max:
                await sleep_until_woken(self._wake, self._idle_poll_s)
                self._wake.clear()

    async def flush(self, timeout_s: float) -> None:
        """Publish until this relay's outbox is empty or the time is up (used at shutdown)."""
        async with asyncio.timeout(timeout_s):
            while await self.publish_once():
                pass

    async def publish_once(self) -> int:
        """Publish one batch; returns how many rows went out."""
        async with self._sessions() as session, session.begin():
            locked = await session.scalar(
                text("select pg_try_advisory_xact_lock(:k)"), {"k": self._lock_key}
            )
            if not locked:
                return 0
            rows = (
                await session.execute(
                    select(
                        outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers
                    )
                    .where(outbox.c.relay == self.relay)
                    .order_by(outbox.c.id)
                    .limit(self._batch_max)
                )
            ).all()
            if not rows:
                metrics.OUTBOX_OLDEST_AGE.labels(self.relay).set(0)
                metrics.OUTBOX_BACKLOG.labels(self.relay).set(0)
                return 0
            sends = [
                await self._producer.send(
                    row.topic,
                    value=row.value,
                    key=row.key.encode(),
                    headers=[(k, v.encode()) for k, v in row.headers.items()],
                )
                for row in rows
            ]
            await asyncio.gather(*sends)
            await session.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
            backlog = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.relay == self.relay)
            )
            metrics.OUTBOX_BACKLOG.labels(self.relay).set(backlog or 0)
            oldest_age_s = await session.scalar(
                select(func.extract("epoch", func.now() - func.min(outbox.c.created_at))).where(
                    outbox.c.relay == self.relay
                )
            )
            metrics.OUTBOX_OLDEST_AGE.labels(self.relay).set(float(oldest_age_s or 0))
        for row in rows:
            metrics.OUTBOX_PUBLISHED.labels(self.relay, row.topic).inc()
        return len(rows)
