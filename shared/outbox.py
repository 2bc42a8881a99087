"""The transactional outbox: rows written with a state change, published to Kafka by one relay.

Failures come in two kinds. Transient ones (broker unreachable, timeouts, leader changes)
block the relay, which retries with backoff until Kafka is back: nothing is skipped, order
holds, and readiness says "degraded" once that lasts longer than a threshold. Permanent
ones (the broker refuses this record for good: too large, topic not authorised, invalid
topic, a value that does not serialise) are counted on the row; after `max_attempts` the row
is parked (kept with its error, never retried by itself) and a copy goes to the topic's
`.dlq` (the value left out when it is what does not fit), so the rows behind it go on.

Per-key order: rows are published in id order by one relay at a time (an advisory lock) with
an idempotent producer. A parked row does not hold back later rows of the same key: every
lifecycle and handoff event carries the whole state of its lead or handoff, so a later event
supersedes it, and holding them would turn one bad record into a lead stuck for good.
"""

import asyncio
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import jsoncodec, metrics
from shared.db import outbox
from shared.events import CONTENT_TYPE, CloudEvent
from shared.kafka import dlq
from shared.logs import Outage
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
            ADD_EVENTS,
            {
                "relay": relay,
                "topic": topic,
                "keys": [e.subject for e in events],
                "values": [e.to_bytes() for e in events],
                "headers": jsoncodec.dumps({"content-type": CONTENT_TYPE, **(headers or {})}),
            },
        )


# Arrays, not a parameter set per row: prepared once, no per-row statement building.
ADD_EVENTS = text(
    "insert into outbox (relay, topic, key, value, headers)"
    " select :relay, :topic, k, v, cast(:headers as jsonb)"
    " from unnest(cast(:keys as text[]), cast(:values as bytea[])) with ordinality as t(k, v, n)"
    " order by n"
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


# The broker (or the client, before sending) refuses these records whatever we retry.
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)
PERMANENT_PUBLISH_ERRORS = (
    *TOO_LARGE,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    CorruptRecordException,
    TypeError,  # a key, value or header that does not serialise
    ValueError,
)


def is_permanent_publish_error(exc: BaseException) -> bool:
    """True when publishing this record again cannot succeed (anything else is transient)."""
    return isinstance(exc, PERMANENT_PUBLISH_ERRORS)


def is_dead_letter_topic(topic: str) -> bool:
    """True for `<topic>.dlq` (a dead letter that fails is parked, not dead-lettered again)."""
    return topic.endswith(".dlq")


class OutboxPublishFailed(Exception):
    """Some rows could not be published for a transient reason; they are retried as they are."""


@dataclass(frozen=True)
class ParkedRow:
    """An outbox row set aside after permanent publish failures."""

    id: int
    relay: str
    topic: str
    key: str
    size_bytes: int
    attempts: int
    last_error: str | None
    parked_at: datetime


async def parked_rows(session: AsyncSession, relay: str, limit: int = 100) -> list[ParkedRow]:
    """A relay's parked rows, most recently parked first (for an admin listing)."""
    rows = await session.execute(
        select(
            outbox.c.id,
            outbox.c.relay,
            outbox.c.topic,
            outbox.c.key,
            func.length(outbox.c.value).label("size_bytes"),
            outbox.c.attempts,
            outbox.c.last_error,
            outbox.c.parked_at,
        )
        .where(outbox.c.relay == relay, outbox.c.parked_at.is_not(None))
        .order_by(outbox.c.parked_at.desc(), outbox.c.id)
        .limit(limit)
    )
    return [ParkedRow(**r._mapping) for r in rows]


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
        max_attempts: int = 3,
        backoff_max_s: float = 15.0,
        summary_every_s: float = 60.0,
        observe_every_s: float = 1.0,
    ) -> None:
        self.relay = relay
        self._sessions = sessions
        self._producer = producer
        self._batch_max = batch_max
        self._idle_poll_s = idle_poll_s
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._summary_every_s = summary_every_s
        self._observe_every_s = observe_every_s
        self._observed_at = -observe_every_s  # monotonic time the backlog was last counted
        self._wake = asyncio.Event()
        # One advisory lock per relay keeps a single publisher at a time, so per-key order holds.
        self._lock_key = zlib.crc32(f"outbox:{relay}".encode())
        self.outage = Outage(log, f"outbox relay {relay}", summary_every_s)
        for kind in ("transient", "permanent"):
            metrics.OUTBOX_PUBLISH_FAILURES.labels(relay, kind)
        metrics.OUTBOX_PARKED.labels(relay)
        metrics.OUTBOX_STUCK_SECONDS.labels(relay).set(0)

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._wake.set()

    def stuck_for_s(self) -> float:
        """How long the relay has been failing without getting through (0 when healthy)."""
        return self.outage.duration_s()

    @property
    def last_error(self) -> str | None:
        """The error of the latest failed try while failing."""
        return self.outage.last_error

    async def run(self) -> None:
        """Publish until cancelled; sleeps until woken or the idle poll interval passes.

        A failure is logged once when it starts, then as a summary every `summary_every_s`,
        and once more on recovery: never a traceback per retry.
        """
        delay_s = 0.5
        while True:
            try:
                published = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outage.failed(exc)
                metrics.OUTBOX_STUCK_SECONDS.labels(self.relay).set(self.outage.duration_s())
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._backoff_max_s)
                continue
            self.outage.recovered()
            metrics.OUTBOX_STUCK_SECONDS.labels(self.relay).set(0)
            delay_s = 0.5
            if published < self._batch_max:
                await sleep_until_woken(self._wake, self._idle_poll_s)
                self._wake.clear()

    async def flush(self, timeout_s: float) -> None:
        """Publish until this relay's outbox is empty or the time is up (used at shutdown)."""
        async with asyncio.timeout(timeout_s):
            while await self.publish_once():
                pass

    async def publish_once(self) -> int:
        """Publish one batch; returns how many rows went out.

        Acknowledged rows are deleted and permanent failures recorded (or parked) in the
        same transaction; then, if any row failed for a transient reason, raises
        OutboxPublishFailed so the caller backs off.
        """
        transient: list[BaseException] = []
        async with self._sessions() as session, session.begin():
            claimed = (
                await session.execute(
                    CLAIM_BATCH, {"k": self._lock_key, "relay": self.relay, "n": self._batch_max}
                )
            ).all()
            if not claimed[0].locked:
                return 0
            rows = [row for row in claimed if row.id is not None]
            published = []
            if rows:
                # Sent all at once (the producer batches them), then each outcome awaited.
                sends: list[asyncio.Future[Any] | BaseException] = []
                for row in rows:
                    sent = await self._send(row)
                    sends.append(sent)
                    if isinstance(sent, BaseException) and not is_permanent_publish_error(sent):
                        break  # the broker is away: each further send would wait its timeout
                outcomes = await asyncio.gather(*(_outcome(s) for s in sends))
                for row, error in zip(rows, outcomes, strict=False):
                    if error is None:
                        published.append(row)
                    elif is_permanent_publish_error(error):
                        await self._record_permanent_failure(session, row, error)
                    else:
                        transient.append(error)
            ids = [r.id for r in published]
            now = time.monotonic()
            # Counting the backlog walks the relay's rows, dead ones included (each published
            # row is deleted: thousands between two autovacuums), ~2 ms a pass under load, and
            # a relay passes after every commit. So it is counted once per observe_every_s,
            # and on every pass that refused a row.
            if len(ids) == len(rows) and now < self._observed_at + self._observe_every_s:
                await session.execute(DELETE_PUBLISHED, {"ids": ids})
            else:
                await self._delete_and_observe(session, ids)
                self._observed_at = now
        for row in published:
            metrics.OUTBOX_PUBLISHED.labels(self.relay, row.topic).inc()
        if transient:
            metrics.OUTBOX_PUBLISH_FAILURES.labels(self.relay, "transient").inc(len(transient))
            first = transient[0]
            raise OutboxPublishFailed(
                f"{len(transient)} row(s) not acknowledged: {first.__class__.__name__}: {first}"
            )
        return len(published)

    async def _send(self, row: Any) -> "asyncio.Future[Any] | BaseException":
        try:
            return await self._producer.send(
                row.topic,
                value=row.value,
                key=row.key.encode(),
                headers=[(k, str(v).encode()) for k, v in row.headers.items()],
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused before it left the client (too large, say)
            return exc

    async def _record_permanent_failure(
        self, session: AsyncSession, row: Any, error: BaseException
    ) -> None:
        metrics.OUTBOX_PUBLISH_FAILURES.labels(self.relay, "permanent").inc()
        attempts = row.attempts + 1
        reason = f"{error.__class__.__name__}: {error}"[:500]
        if attempts < self._max_attempts:
            log.warning(
                "outbox relay %s: row %d for %s refused (attempt %d of %d): %s",
                self.relay,
                row.id,
                row.topic,
                attempts,
                self._max_attempts,
                reason,
            )
            await session.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(attempts=attempts, last_error=reason)
            )
            return
        await session.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(attempts=attempts, last_error=reason, parked_at=func.now())
        )
        log.error(
            "outbox relay %s parked row %d for %s after %d attempts: %s",
            self.relay,
            row.id,
            row.topic,
            attempts,
            reason,
        )
        if is_dead_letter_topic(row.topic):
            return
        headers = {
            **row.headers,
            "leadrouter-error": reason,
            "leadrouter-original-topic": row.topic,
            "leadrouter-outbox-relay": self.relay,
            "leadrouter-outbox-id": str(row.id),
        }
        value = row.value
        if isinstance(error, TOO_LARGE):
            # The record itself is what does not fit: the DLQ gets where to find it instead.
            headers["leadrouter-value-omitted"] = f"{len(row.value)} bytes, kept in the outbox"
            value = b""
        await add_raw(session, self.relay, dlq(row.topic), row.key, value, headers)

    async def _delete_and_observe(self, session: AsyncSession, published: list[int]) -> None:
        """Delete the acknowledged rows and set the backlog gauges, in one round trip."""
        backlog, parked, oldest_age_s = (
            await session.execute(DELETE_AND_OBSERVE, {"relay": self.relay, "ids": published})
        ).one()
        metrics.OUTBOX_BACKLOG.labels(self.relay).set(backlog or 0)
        metrics.OUTBOX_PARKED.labels(self.relay).set(parked or 0)
        metrics.OUTBOX_OLDEST_AGE.labels(self.relay).set(float(oldest_age_s or 0))


# A relay's wake-up is on the speed-to-lead path, so each step is one round trip: take the
# relay's advisory lock and read the batch together (one row with locked = false, or with a
# null id when the outbox is empty) ...
CLAIM_BATCH = text(
    "with lock as materialized (select pg_try_advisory_xact_lock(:k) as locked)"
    " select lock.locked, o.id, o.topic, o.key, o.value, o.headers, o.attempts"
    " from lock left join lateral ("
    "  select id, topic, key, value, headers, attempts from outbox"
    "  where lock.locked and relay = :relay and parked_at is null order by id limit :n"
    " ) o on true order by o.id"
).columns(headers=JSONB)
# ... and delete what Kafka acknowledged while counting what is left (the count's snapshot
# still holds the deleted rows, so they are left out by id).
DELETE_PUBLISHED = text("delete from outbox where id = any(cast(:ids as bigint[]))")
DELETE_AND_OBSERVE = text(
    "with gone as (delete from outbox where id = any(cast(:ids as bigint[])) returning id)"
    " select count(*) filter (where pending),"
    " count(*) filter (where parked_at is not null),"
    " extract(epoch from now() - min(created_at) filter (where pending))"
    " from (select parked_at, created_at,"
    "  parked_at is null and id not in (select id from gone) as pending"
    "  from outbox where relay = :relay) as rows"
)


async def _outcome(sent: "asyncio.Future[Any] | BaseException") -> BaseException | None:
    """None once Kafka acknowledged the record, else why not."""
    if isinstance(sent, BaseException):
        return sent
    try:
        await sent
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc
    return None
