"""The board's live feed: committed changes to handoffs, reps and the funnel, fanned out.

One LISTEN connection per process (migration 0010_board sends a NOTIFY from the
transactions that change those tables, delivered on commit) and one small queue per open
page. Chosen over polling a change cursor: a notification arrives the moment its
transaction commits, costs nothing while idle, and `updated_at`-style cursors miss rows
committed late by a transaction that started early.
"""

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "leadrouter_board"
RECONNECT_S = 1.0


def asyncpg_dsn(database_url: str) -> str:
    """The libpq-style DSN asyncpg takes, from the SQLAlchemy URL the services use."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeFeed:
    """Tells every subscriber which tables changed; started by the first subscriber."""

    def __init__(self, database_url: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.closing = asyncio.Event()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of changed table names ("*" after a reconnect: anything may have changed)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="board-feed")
            self._end_streams_on_exit()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=16)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _end_streams_on_exit(self) -> None:
        """On SIGTERM or SIGINT, end the open streams, then let the server's handler run.

        uvicorn waits for open responses before it shuts the app down, and an event stream
        never ends by itself: without this an open board would hold every shutdown for the
        whole graceful timeout.
        """
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (e.g. not under a test client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def end_streams(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.closing.set)
                previous(signum, frame)

            signal.signal(sig, end_streams)

    def publish(self, table: str) -> None:
        """Hand a change to every subscriber; a slow page gets "*" instead of a backlog."""
        for queue in self._subscribers:
            try:
                queue.put_nowait(table)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait("*")

    async def _listen(self) -> None:
        first = True
        while True:
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning(
                    "board feed: cannot reach PostgreSQL (%s); retrying", type(exc).__name__
                )
                await asyncio.sleep(RECONNECT_S)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            try:
                await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, table: self.publish(table))
                self.listening.set()
                if not first:  # notifications sent while we were away are gone
                    self.publish("*")
                first = False
                await lost.wait()
                log.warning("board feed: connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("board feed: %s; reconnecting", type(exc).__name__)
            finally:
                self.listening.clear()
                if not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(RECONNECT_S)

    async def close(self) -> None:
        """Stop listening."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
