"""Durable timers: rows with a due time, claimed with SKIP LOCKED, each fired in its own savepoint.

A timer fires in the same transaction that deletes it, so a handler's state change and
outbox rows commit together with the firing: a timer survives restarts, fires once, and
several instances share the load. One failing timer never holds back the others: its
savepoint is rolled back, the row records the attempt and the error and is due again after
a backoff, and after `max_attempts` failures (at once for an error retrying cannot fix,
`shared.errors.is_retryable`) it is parked: kept with its error, counted, alerted, listed by
`parked_timers`, and no longer fired. A kind of this runner's prefix without a handler fails
the same way. The runner sleeps until the next due time and wakes early when a transaction
of this process that set a timer commits.

Lock order: a service whose handlers lock rows of its own (handoff: reps, then the handoff
row, then its timers) passes `lock_first`; the runner then reads what is due, lets it take
those locks (SKIP LOCKED where it must not wait) and claims only the timers whose rows it got,
so a firing never holds a timer row while it waits for a row that a feedback holding it needs.

A batch fires under one savepoint and one delete. A timer that a handler earlier in the batch
set again or cancelled no longer fires (its new setting stays), and `find` still sees the
batch's timers that have not fired yet. A failed attempt moves the timer's due time, so
nothing a handler publishes may derive its identity from `Timer.due_at`.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import jsoncodec, metrics
from shared.db import db_now, driver_connection, timers
from shared.errors import is_retryable
from shared.logs import Outage
from shared.wakeup import sleep_until_woken

__all__ = [
    "ParkedTimer",
    "Timer",
    "TimerHandler",
    "TimerLocker",
    "TimerRunner",
    "cancel",
    "find",
    "parked_timers",
    "pending",
    "retry_delay_s",
    "schedule",
    "schedule_each",
    "schedule_many",
    "timers",
    "unpark",
]

log = logging.getLogger(__name__)

RETRY_CAP_S = 300.0
# How soon to look again at due timers whose rows another transaction holds (it commits soon).
HELD_RETRY_S = 0.05

# session.info key: set while a commit of this session is to wake the runners (see below).
_WAKES_RUNNERS = "leadrouter.timers.wakes_runners"
# This process's runners: a commit that set a timer wakes them to re-read the next due time.
_RUNNERS: "weakref.WeakSet[TimerRunner]" = weakref.WeakSet()

# session.info key: the claimed timers of the batch firing in this session that have not fired
# yet, by (kind, key). Their rows are deleted before the first handler runs; `find` answers for
# them and `schedule_many`/`cancel` drop them (set again or cancelled: they no longer fire).
_UNFIRED = "leadrouter.timers.unfired"


@dataclass(frozen=True)
class Timer:
    """A due timer handed to its handler."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class ParkedTimer:
    """A timer set aside after its handler kept failing: what an operator needs to act."""

    kind: str
    key: str
    due_at: datetime
    attempts: int
    last_error: str | None
    parked_at: datetime


# The handler gets the session of the firing transaction and the database's current time.
TimerHandler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]

# Takes, in the service's lock order, the locks the handlers of these due (kind, key) timers
# will need, before any timer row is claimed; returns the (kind, key) pairs that may fire now
# (a pair whose rows another transaction holds is left for the next round).
TimerLocker = Callable[
    [AsyncSession, Sequence[tuple[str, str]]], Awaitable[Collection[tuple[str, str]]]
]


def retry_delay_s(attempts: int, base_s: float, cap_s: float = RETRY_CAP_S) -> float:
    """Delay before the next try of a timer that failed `attempts` times (doubling, capped)."""
    return min(base_s * 2 ** max(attempts - 1, 0), cap_s)


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
    """Set many timers of one kind in one statement (a new setting clears past failures)."""
    await schedule_each(session, [(kind, key, at, payload) for key, at in due.items()])


async def schedule_each(
    session: AsyncSession, settings: Sequence[tuple[str, str, datetime, dict[str, Any] | None]]
) -> None:
    """Set timers of any kinds, each (kind, key, due_at, payload), in one statement (an
    assignment's three SLA clocks cost one round trip on the speed-to-lead path)."""
    if not settings:
        return
    _wake_runners_after_commit(session, min(at for _, _, at, _ in settings))
    for kind, key, _, _ in settings:
        _forget_unfired(session, kind, (key,))
    ordered = sorted(settings, key=lambda s: (s[0], s[1]))
    driver = await driver_connection(session)
    await driver.execute(
        SCHEDULE_EACH,
        [kind for kind, _, _, _ in ordered],
        [key for _, key, _, _ in ordered],
        [at for _, _, at, _ in ordered],
        [jsoncodec.dumps(payload or {}) for _, _, _, payload in ordered],
    )


# One statement fed one array per column, sent straight to asyncpg on the session's connection:
# a batch's timers cost no per-row statement building or parameter encoding.
SCHEDULE_EACH = (
    "insert into timers (kind, key, due_at, payload)"
    " select k, y, d, p::jsonb from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[])"
    " as t(k, y, d, p)"
    " on conflict (kind, key) do update set due_at = excluded.due_at,"
    " payload = excluded.payload, attempts = 0, last_error = null, parked_at = null"
)


async def cancel(session: AsyncSession, kind: str, *keys: str) -> None:
    """Remove the (kind, key) timers that are set."""
    if keys:
        _forget_unfired(session, kind, keys)
        driver = await driver_connection(session)
        await driver.execute(CANCEL, kind, list(keys))


CANCEL = "delete from timers where kind = $1 and key = any($2::text[])"


def _wake_runners_after_commit(session: AsyncSession, due_at: datetime) -> None:
    """Once this session's transaction commits, wake this process's runners that sleep past
    the earliest timer it set (`due_at`). Only such commits wake them: woken by every commit,
    a runner read the next due time (three queries) after each consumer batch, on the
    speed-to-lead path; and a scoring batch sets decay timers days ahead, which need none."""
    earliest = session.info.get(_WAKES_RUNNERS)
    if earliest is not None:
        session.info[_WAKES_RUNNERS] = min(earliest, due_at)
        return
    session.info[_WAKES_RUNNERS] = due_at

    def wake(_: Any) -> None:
        due_at = session.info.pop(_WAKES_RUNNERS, None)
        for runner in list(_RUNNERS):
            try:
                runner.wake_for(due_at)
            except RuntimeError:  # a runner left on an event loop that has closed (tests)
                _RUNNERS.discard(runner)

    event.listen(session.sync_session, "after_commit", wake, once=True)


def _forget_unfired(session: AsyncSession, kind: str, keys: Iterable[str]) -> None:
    unfired = session.info.get(_UNFIRED)
    if unfired:
        for key in keys:
            unfired.pop((kind, key), None)


async def find(session: AsyncSession, kind: str, key: str) -> Timer | None:
    """The (kind, key) timer if it is set and has not fired (due or not, parked or not).

    Read without a lock: another instance may be firing it this moment; its handler then
    waits on the same rows and sees what the caller did.
    """
    claimed: Timer | None = session.info.get(_UNFIRED, {}).get((kind, key))
    if claimed is not None:  # claimed by the batch firing in this session, not fired yet
        return claimed
    row = (
        await session.execute(select(timers).where(timers.c.kind == kind, timers.c.key == key))
    ).first()
    return Timer(row.kind, row.key, row.due_at, row.payload) if row else None


async def pending(session: AsyncSession, kinds: Sequence[str]) -> list[Timer]:
    """The timers of these kinds that have not fired, soonest first (parked ones included)."""
    rows = await session.execute(
        select(timers).where(timers.c.kind.in_(kinds)).order_by(timers.c.due_at, timers.c.id)
    )
    return [Timer(r.kind, r.key, r.due_at, r.payload) for r in rows]


async def parked_timers(
    session: AsyncSession, kind_prefix: str = "", limit: int = 100
) -> list[ParkedTimer]:
    """Parked timers whose kind starts with `kind_prefix`, most recently parked first."""
    rows = await session.execute(
        select(timers)
        .where(timers.c.parked_at.is_not(None), timers.c.kind.startswith(kind_prefix))
        .order_by(timers.c.parked_at.desc(), timers.c.id)
        .limit(limit)
    )
    return [
        ParkedTimer(r.kind, r.key, r.due_at, r.attempts, r.last_error, r.parked_at) for r in rows
    ]


async def unpark(session: AsyncSession, kind: str, key: str, due_at: datetime) -> bool:
    """Give a parked timer a fresh start at `due_at` (after its cause is fixed)."""
    _wake_runners_after_commit(session, due_at)
    result = await session.execute(
        update(timers)
        .where(timers.c.kind == kind, timers.c.key == key, timers.c.parked_at.is_not(None))
        .values(due_at=due_at, attempts=0, last_error=None, parked_at=None)
        .returning(timers.c.id)
    )
    return result.first() is not None


class TimerRunner:
    """Fires the due timers of its kinds through their handlers, one savepoint per timer.

    `kind_prefix` names the kinds this runner owns (e.g. "handoff."): a due timer of such a
    kind without a handler is a failure like a raising handler, not a row left unnoticed.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handlers: dict[str, TimerHandler],
        *,
        kind_prefix: str | None = None,
        on_commit: Callable[[], None] = lambda: None,
        lock_first: TimerLocker | None = None,
        batch_max: int = 100,
        max_sleep_s: float = 30.0,
        max_attempts: int = 5,
        retry_base_s: float = 2.0,
    ) -> None:
        self._sessions = sessions
        self._handlers = handlers
        self._kind_prefix = kind_prefix
        self._on_commit = on_commit
        self._lock_first = lock_first
        self._batch_max = batch_max
        self._max_sleep_s = max_sleep_s
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._wake = asyncio.Event()
        # When the runner, asleep, reads the due timers again (epoch seconds); None while awake.
        self._sleeps_until: float | None = None
        _RUNNERS.add(self)
        self.outage = Outage(log, "timer runner")
        for kind in handlers:  # exported at 0 from the start, so increase() sees the first
            metrics.TIMER_FAILURES.labels(kind)
            metrics.TIMERS_PARKED.labels(kind)

    def wake(self) -> None:
        """Re-read the next due time now (a nearer timer may have been scheduled)."""
        self._wake.set()

    def wake_for(self, due_at: datetime | None) -> None:
        """Wake unless asleep until before `due_at` (it reads the due timers then anyway)."""
        # A second's margin for the host clock against the database's, which due times use.
        sleeps_until = self._sleeps_until
        if due_at is None or sleeps_until is None or due_at.timestamp() < sleeps_until + 1.0:
            self._wake.set()

    def _owned(self) -> Any:
        mine = timers.c.kind.in_(list(self._handlers))
        if self._kind_prefix:
            return or_(mine, timers.c.kind.startswith(self._kind_prefix))
        return mine

    async def run(self) -> None:
        """Fire timers until cancelled; a database outage is logged once, then summarised."""
        while True:
            # Cleared before reading, so a timer set while the runner reads wakes it again.
            self._wake.clear()
            try:
                fired = await self.fire_due()
                self.outage.recovered()
                if fired >= self._batch_max:
                    continue
                sleep_s = await self._seconds_until_next()
                if fired == 0 and sleep_s == 0:
                    sleep_s = HELD_RETRY_S  # due, but another transaction holds its rows
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outage.failed(exc)
                sleep_s = 1.0
            self._sleeps_until = time.time() + sleep_s
            try:
                await sleep_until_woken(self._wake, sleep_s)
            finally:
                self._sleeps_until = None

    async def fire_due(self) -> int:
        """Fire one batch of due timers; returns how many fired (failures are recorded)."""
        async with self._sessions() as session, session.begin():
            if self._lock_first is None:
                now = await db_now(session)
                claimed = await self._claim(session, now)
            else:
                locked_at, claimed = await self._lock_then_claim(session)
                if locked_at is None:
                    return 0
                now = locked_at
            if not claimed:
                return 0
            together = (
                await self._fire_together(session, claimed, now) if len(claimed) > 1 else None
            )
            if together is not None:
                fired = together
            else:
                # One failed (or there is one): the batch's work was rolled back and each runs
                # on its own, so a failure is recorded against its timer and the others still
                # fire. A handler may thus run twice; only one run commits.
                fired = await self._fire_each(session, claimed, now)
            await self._observe_parked(session)
        for row in fired:
            metrics.TIMER_LATENESS.labels(row.kind).observe(
                max((now - row.due_at).total_seconds(), 0.0)
            )
        self._on_commit()
        return len(fired)

    async def _claim(
        self, session: AsyncSession, now: datetime, ids: Sequence[int] | None = None
    ) -> Sequence[Any]:
        """Lock due timers (all of this runner's, or those of `ids`) that nobody else holds."""
        owned = self._owned() if ids is None else timers.c.id.in_(ids)
        return (
            await session.execute(
                select(timers)
                .where(owned, timers.c.parked_at.is_(None), timers.c.due_at <= now)
                .order_by(timers.c.due_at, timers.c.id)
                .limit(self._batch_max)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def _lock_then_claim(
        self, session: AsyncSession
    ) -> tuple[datetime | None, Sequence[Any]]:
        """Read what is due, let the service lock what its handlers need, then claim.

        A claimed timer row is held until the firing commits, and whoever changes a timer
        (a feedback cancelling a warning) holds the row it belongs to first: a runner that
        claimed before locking that row waited for it while it waited for the timer, a
        deadlock. So the service's locks come first and only their timers are claimed.
        """
        due = (
            await session.execute(
                select(timers.c.id, timers.c.kind, timers.c.key, func.now().label("now"))
                .where(self._owned(), timers.c.parked_at.is_(None), timers.c.due_at <= func.now())
                .order_by(timers.c.due_at, timers.c.id)
                .limit(self._batch_max)
            )
        ).all()
        if not due:
            return None, []
        assert self._lock_first is not None
        free = set(await self._lock_first(session, [(r.kind, r.key) for r in due]))
        ids = [r.id for r in due if (r.kind, r.key) in free]
        now = due[0].now
        return now, (await self._claim(session, now, ids) if ids else [])

    async def _handle(self, session: AsyncSession, row: Any, now: datetime) -> None:
        handler = self._handlers.get(row.kind)
        if handler is None:
            raise LookupError(f"no handler for timer kind {row.kind!r}")
        await handler(session, Timer(row.kind, row.key, row.due_at, row.payload), now)

    async def _fire_together(
        self, session: AsyncSession, claimed: Sequence[Any], now: datetime
    ) -> list[Any] | None:
        """The usual batch: one savepoint and one delete for all (three statements per timer
        held firing to ~750/s); the timers fired, or None, with the batch's work rolled back,
        if a handler fails."""
        unfired = {(r.kind, r.key): Timer(r.kind, r.key, r.due_at, r.payload) for r in claimed}
        session.info[_UNFIRED] = unfired
        fired = []
        try:
            async with session.begin_nested():
                await session.execute(
                    delete(timers).where(timers.c.id.in_([r.id for r in claimed]))
                )
                for row in claimed:
                    if unfired.pop((row.kind, row.key), None) is None:
                        continue  # an earlier handler set it again or cancelled it
                    await self._handle(session, row, now)
                    fired.append(row)
        except Exception:
            return None
        finally:
            del session.info[_UNFIRED]
        return fired

    async def _fire_each(
        self, session: AsyncSession, claimed: Sequence[Any], now: datetime
    ) -> list[Any]:
        """Fire each timer in its own savepoint; a failure is recorded, the others go on."""
        fired = []
        for row in claimed:
            try:
                async with session.begin_nested():
                    taken = await self._take(session, row)
                    if taken:
                        await self._handle(session, row, now)
            except Exception as exc:
                await self._record_failure(session, row, exc, now)
            else:
                if taken:
                    fired.append(row)
        return fired

    async def _take(self, session: AsyncSession, row: Any) -> bool:
        """Delete a claimed timer just before its handler runs (so the handler may set it
        again), if it is still as claimed: a handler fired before it in this batch may have
        set it again (same row, a new due time and payload) or cancelled it; then it is no
        longer the timer that came due, it does not fire, and its new setting stays."""
        deleted = await session.execute(
            delete(timers)
            .where(
                timers.c.id == row.id,
                timers.c.due_at == row.due_at,
                timers.c.payload == row.payload,
            )
            .returning(timers.c.id)
        )
        return deleted.first() is not None

    async def _record_failure(
        self, session: AsyncSession, row: Any, exc: Exception, now: datetime
    ) -> None:
        attempts = row.attempts + 1
        error = f"{exc.__class__.__name__}: {exc}"[:500]
        park = attempts >= self._max_attempts or not is_retryable(exc)
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if park:
            values["parked_at"] = now
        else:
            values["due_at"] = now + timedelta(seconds=retry_delay_s(attempts, self._retry_base_s))
        await session.execute(update(timers).where(timers.c.id == row.id).values(**values))
        metrics.TIMER_FAILURES.labels(row.kind).inc()
        if park:
            log.error(
                "timer %s %s parked after %d failed attempt(s): %s",
                row.kind,
                row.key,
                attempts,
                error,
            )
        else:
            log.warning(
                "timer %s %s failed (attempt %d of %d), retrying later: %s",
                row.kind,
                row.key,
                attempts,
                self._max_attempts,
                error,
            )

    async def _observe_parked(self, session: AsyncSession) -> None:
        parked = await session.execute(
            select(timers.c.kind, func.count())
            .where(self._owned(), timers.c.parked_at.is_not(None))
            .group_by(timers.c.kind)
        )
        parked_by_kind: dict[str, int] = {kind: n for kind, n in parked}
        for kind in {*self._handlers, *parked_by_kind}:
            metrics.TIMERS_PARKED.labels(kind).set(parked_by_kind.get(kind, 0))

    async def _seconds_until_next(self) -> float:
        async with self._sessions() as session:
            # Also after a restart with nothing due, parked timers are counted (and alerted).
            await self._observe_parked(session)
            wait_s = await session.scalar(
                select(func.extract("epoch", func.min(timers.c.due_at) - func.now())).where(
                    self._owned(), timers.c.parked_at.is_(None)
                )
            )
        if wait_s is None:
            return self._max_sleep_s
        return min(max(float(wait_s), 0.0), self._max_sleep_s)
