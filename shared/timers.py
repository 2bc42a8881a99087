"""Durable timers: rows with a due time, claimed with SKIP LOCKED and fired in one transaction.

A timer fires in the same transaction that deletes it, so a handler's state change and
outbox rows commit together with the firing: a timer survives restarts, fires once, and
several instances share the load. The runner sleeps until the next due time and wakes
early when this process schedules a nearer one.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import db_now, metadata
from shared.wakeup import sleep_until_woken

log = logging.getLogger(__name__)

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("timers_kind_key", "kind", "key", unique=True),
    Index("timers_due", "due_at"),
)

TIMER_LATENESS = Histogram(
    "leadrouter_timer_lateness_seconds",
    "How long after its due time a timer fired",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


@dataclass(frozen=True)
class Timer:
    """A due timer handed to its handler."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]


# The handler gets the session of the firing transaction and the database's current time.
TimerHandler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]


async def schedule(
    session: AsyncSession,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """Set the (kind, key) timer to fire at `due_at`, replacing an earlier setting."""
    await schedule_many(session, kind, {key: due_at}, payload)


async def schedule_many(
    session: AsyncSession,
    kind: str,
    due: dict[str, datetime],
    payload: dict[str, Any] | None = None,
) -> None:
    """Set many timers of one kind in one statement."""
    if not due:
        return
    stmt = pg_insert(timers)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["kind", "key"],
            set_={"due_at": stmt.excluded.due_at, "payload": stmt.excluded.payload},
        ),
        [
            {"kind": kind, "key": k, "due_at": at, "payload": payload or {}}
            for k, at in sorted(due.items())
        ],
    )


async def cancel(session: AsyncSession, kind: str, *keys: str) -> None:
    """Remove the (kind, key) timers that are set."""
    if keys:
        await session.execute(delete(timers).where(timers.c.kind == kind, timers.c.key.in_(keys)))


async def pending(session: AsyncSession, kinds: Sequence[str]) -> list[Timer]:
    """The timers of these kinds that have not fired, soonest first."""
    rows = await session.execute(
        select(timers).where(timers.c.kind.in_(kinds)).order_by(timers.c.due_at, timers.c.id)
    )
    return [Timer(r.kind, r.key, r.due_at, r.payload) for r in rows]


class TimerRunner:
    """Fires due timers of some kinds through their handlers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handlers: dict[str, TimerHandler],
        *,
        on_commit: Callable[[], None] = lambda: None,
        batch_max: int = 100,
        max_sleep_s: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._handlers = handlers
        self._on_commit = on_commit
        self._batch_max = batch_max
        self._max_sleep_s = max_sleep_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Re-read the next due time now (a nearer timer may have been scheduled)."""
        self._wake.set()

    async def run(self) -> None:
        """Fire timers until cancelled."""
        while True:
            try:
                fired = await self.fire_due()
                if fired >= self._batch_max:
                    continue
                sleep_s = await self._seconds_until_next()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer runner failed; retrying")
                sleep_s = 1.0
            self._wake.clear()
            await sleep_until_woken(self._wake, sleep_s)

    async def fire_due(self) -> int:
        """Fire one batch of due timers in one transaction; returns how many fired."""
        kinds = list(self._handlers)
        async with self._sessions() as session, session.begin():
            now = await db_now(session)
            assert now is not None
            claimed = (
                await session.execute(
                    select(timers)
                    .where(timers.c.kind.in_(kinds), timers.c.due_at <= now)
                    .order_by(timers.c.due_at, timers.c.id)
                    .limit(self._batch_max)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not claimed:
                return 0
            # Deleted before the handlers run, so a handler may schedule the same timer again.
            await session.execute(delete(timers).where(timers.c.id.in_([r.id for r in claimed])))
            for row in claimed:
                timer = Timer(row.kind, row.key, row.due_at, row.payload)
                await self._handlers[row.kind](session, timer, now)
        for row in claimed:
            TIMER_LATENESS.labels(row.kind).observe(max((now - row.due_at).total_seconds(), 0.0))
        self._on_commit()
        return len(claimed)

    async def _seconds_until_next(self) -> float:
        async with self._sessions() as session:
            wait_s = await session.scalar(
                select(func.extract("epoch", func.min(timers.c.due_at) - func.now())).where(
                    timers.c.kind.in_(list(self._handlers))
                )
            )
        if wait_s is None:
            return self._max_sleep_s
        return min(max(float(wait_s), 0.0), self._max_sleep_s)
