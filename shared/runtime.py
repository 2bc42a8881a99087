"""Start-up and shutdown shared by the services: migrate, topics, producer, consumers, relay.

A service subscribes any number of consumers (`consume`), each a `Subscription` run the same
way: the transactional consumer loop, and beside it the same upkeep (lag exported, advisory
offsets committed to Kafka, processed ids pruned past the dedup window, and the
subscription's own retention jobs, such as deleting old webhook deliveries).
"""

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from shared.consumer import BatchHandler, TransactionalConsumer
from shared.db import make_engine, make_sessionmaker
from shared.heap import survivors_settled
from shared.kafka import client_options, ensure_topics, kafka_reachable, make_producer
from shared.metrics import GC_CPU_SECONDS, GC_PAUSE_SECONDS
from shared.migrate import upgrade_async
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings
from shared.timers import TimerHandler, TimerLocker, TimerRunner

log = logging.getLogger(__name__)

# A retention job: deletes what is past its rule and returns how many rows went.
RetentionJob = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Subscription:
    """One consumer group of a service: its topics, its batch handler and its upkeep."""

    name: str  # the consumer's name in logs and metrics ("scoring", "handoff-webhooks")
    topics: list[str]
    group_id: str
    handler: BatchHandler
    # Called after each of its commits, besides the runtime's own (wake the outbox relay).
    on_commit: Callable[[], None] | None = None
    # Run by the upkeep at the pruning cadence (retention rules of the subscription's rows).
    retention: Sequence[RetentionJob] = field(default_factory=tuple)


class Runtime:
    """What a running service holds: settings, database, producer and its background tasks.

    Kafka clients bind to the running event loop, so they are made in `start()`. A service
    that serves without PostgreSQL (ingest) says `uses_database=False`: it neither migrates
    nor lets a database outage fail its readiness.
    """

    def __init__(
        self, settings: CommonSettings, service: str, *, uses_database: bool = True
    ) -> None:
        self.settings = settings
        self.service = service
        self.uses_database = uses_database
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        # The consumer and the outbox relay retry a failed transaction (a connection that died
        # with a restarted Postgres included), so they skip the pre-ping: on the speed-to-lead
        # path each hop is a consumer transaction and a relay transaction, each a round trip
        # shorter without it.
        self.loop_engine = make_engine(settings.database_url, pool_size=5, pre_ping=False)
        self.loop_sessions = make_sessionmaker(self.loop_engine)
        self._producer: AIOKafkaProducer | None = None
        self.subscriptions: list[Subscription] = []
        self.consumers: dict[str, TransactionalConsumer] = {}
        self._workers: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {}
        self._on_stop: list[Callable[[], Awaitable[Any]]] = []
        self.relay: OutboxRelay | None = None
        self._timer_handlers: dict[str, TimerHandler] = {}
        self._timer_locker: TimerLocker | None = None
        self._after_commit: list[Callable[[], None]] = []
        self.timers: TimerRunner | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    @property
    def producer(self) -> AIOKafkaProducer:
        """The service's one producer (available once started)."""
        if self._producer is None:
            raise RuntimeError(f"{self.service} is not started")
        return self._producer

    @property
    def consumer(self) -> TransactionalConsumer | None:
        """The service's own consumer (the one named after it), if it has one."""
        return self.consumers.get(self.service)

    def consume(
        self,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        *,
        name: str | None = None,
        on_commit: Callable[[], None] | None = None,
        retention: Sequence[RetentionJob] = (),
    ) -> Subscription:
        """Run `handler` on the topics' batches once started, with an outbox relay for its rows
        and the upkeep every subscription gets; `name` defaults to the service's."""
        subscription = Subscription(
            name or self.service, list(topics), group_id, handler, on_commit, tuple(retention)
        )
        if any(s.name == subscription.name for s in self.subscriptions):
            raise ValueError(f"{self.service}: two subscriptions named {subscription.name}")
        self.subscriptions.append(subscription)
        return subscription

    def run_worker(self, name: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `work()` as a background task once consuming starts, cancelled at stop."""
        self._workers[name] = work

    def on_stop(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Await `close()` at stop, after the tasks stopped and before Kafka and the database."""
        self._on_stop.append(close)

    def fire_timers(
        self, handlers: dict[str, TimerHandler], lock_first: TimerLocker | None = None
    ) -> None:
        """Fire durable timers of these kinds through their handlers once started (`lock_first`:
        see shared.timers, lock order)."""
        self._timer_handlers = handlers
        self._timer_locker = lock_first

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Also call `callback` after each commit (it must only wake a task: it runs inline)."""
        self._after_commit.append(callback)

    def committed(self) -> None:
        """Call after a transaction: publish its outbox rows (a commit that set a timer wakes
        the timer runner by itself, see shared.timers)."""
        if self.relay:
            self.relay.wake()
        for callback in self._after_commit:
            callback()

    async def start(self) -> None:
        """Migrate the database, create missing topics, start the producer."""
        s = self.settings
        if self.uses_database:
            log.info("%s: migrating database", self.service)
            await upgrade_async(s.database_url)
        await ensure_topics(s)
        relays = bool(self.subscriptions or self._timer_handlers)
        self._producer = make_producer(s, linger_ms=0 if relays else 2)
        await self._producer.start()
        if relays:
            self.relay = OutboxRelay(
                self.service,
                self.loop_sessions,
                self._producer,
                batch_max=s.outbox_batch_max,
                idle_poll_s=s.outbox_idle_poll_s,
                max_attempts=s.outbox_max_attempts,
            )
        if self._timer_handlers:
            self.timers = TimerRunner(
                self.sessions,
                self._timer_handlers,
                kind_prefix=f"{self.service}.",
                on_commit=self.committed,
                lock_first=self._timer_locker,
                max_attempts=s.timer_max_attempts,
                retry_base_s=s.timer_retry_base_s,
            )
        for sub in self.subscriptions:
            self.consumers[sub.name] = TransactionalConsumer(
                name=sub.name,
                group_id=sub.group_id,
                topics=sub.topics,
                bootstrap=client_options(s),
                sessions=self.loop_sessions,
                handler=sub.handler,
                relay=self.service,  # dead letters go out through the service's outbox relay
                on_commit=self._committed_by(sub),
                batch_max=s.consumer_batch_max,
                poll_timeout_ms=s.consumer_poll_timeout_ms,
                max_retries=s.consumer_max_retries,
            )

    def _committed_by(self, sub: Subscription) -> Callable[[], None]:
        if sub.on_commit is None:
            return self.committed
        own = sub.on_commit

        def committed() -> None:
            self.committed()
            own()

        return committed

    def start_consuming(self) -> None:
        """Start the consumer loops with their upkeep, the timers, the outbox relay and the
        workers (after start-up writes)."""
        for sub in self.subscriptions:
            consumer = self.consumers[sub.name]
            self.spawn(f"{sub.name}-consumer", self._consume(consumer))
            self.spawn(
                f"{sub.name}-consumer-maintenance",
                consumer.maintain(
                    self.settings.consumer_lag_interval_s,
                    self.settings.dedup_window_s,
                    retention=sub.retention,
                ),
            )
        for name, work in self._workers.items():
            self.spawn(name, work())
        if self.timers:
            self.spawn(f"{self.service}-timers", self.timers.run())
        if self.relay:
            self.spawn(f"{self.service}-outbox-relay", self.relay.run())

    @staticmethod
    async def _consume(consumer: TransactionalConsumer) -> None:
        await consumer.start()
        await consumer.run()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a long-lived background coroutine; its crash is logged and fails readiness."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._report)
        self._tasks[name] = task
        return task

    def _report(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: task %s stopped", self.service, task.get_name(), exc_info=task.exception()
            )

    async def stop(self) -> None:
        """Graceful stop: finish the batch in hand, flush the outbox, leave the group, close.

        Bounded by `shutdown_timeout_s`; whatever is cut short was not committed and is
        redone by the next instance from the stored offsets.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_s
        consuming = []
        for name, consumer in self.consumers.items():
            consumer.request_stop()
            if task := self._tasks.get(f"{name}-consumer"):
                consuming.append(task)
        if consuming:
            await asyncio.wait(consuming, timeout=max(deadline - loop.time(), 0))
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            # Bounded: a task that ignores its cancellation must not hold the shutdown for ever.
            _, stuck = await asyncio.wait(
                self._tasks.values(), timeout=max(deadline - loop.time(), 1.0)
            )
            for task in stuck:
                log.warning("%s: task %s did not stop in time", self.service, task.get_name())
        for close in self._on_stop:
            await self._close_quietly("a worker's resource", close())
        if self.relay:
            try:
                await self.relay.flush(max(deadline - loop.time(), 0.1))
            except Exception:  # timed out, or Kafka went away first
                log.warning(
                    "%s: outbox not fully flushed at shutdown; the next start sends it",
                    self.service,
                )
        # With Kafka away, aiokafka's stop() can raise (its fetch task's CancelledError): the
        # rest of the shutdown must still run, and one line says what happened.
        for name, consumer in self.consumers.items():
            await self._close_quietly(f"consumer {name}", consumer.stop())
        if self._producer:
            await self._close_quietly("producer", self._producer.stop())
        await self.engine.dispose()
        await self.loop_engine.dispose()
        log.info("%s: stopped", self.service)

    async def _close_quietly(self, what: str, closing: Awaitable[Any]) -> None:
        try:
            await closing
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("%s: %s did not close cleanly: %r", self.service, what, exc)

    async def readiness_problem(self) -> str | None:
        """None when what this service needs answers and its background tasks run; else why not."""
        if self.uses_database:
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(text("select 1"))
            except Exception as exc:
                return f"postgres unreachable: {exc.__class__.__name__}"
        if not await kafka_reachable(self.settings):
            return f"kafka unreachable at {self.settings.kafka_bootstrap}"
        for name, consumer in self.consumers.items():
            if not consumer.joined:
                which = "consumer" if name == self.service else f"consumer {name}"
                return f"{which} has not joined its group yet (starting, or Kafka is rebalancing)"
        for task in self._tasks.values():
            if task.done():
                return f"background task {task.get_name()} stopped"
        return None

    def degradation(self) -> str | None:
        """Why the service works but not fully (a relay stuck past the threshold), or None.

        Ready but degraded: taking the instance out of service would not unstick the relay,
        so readiness stays 200 and says why; the outbox alerts page.
        """
        if self.relay is None:
            return None
        stuck_s = self.relay.stuck_for_s()
        if stuck_s <= self.settings.outbox_stuck_after_s:
            return None
        return (
            f"outbox relay {self.relay.relay} has not published for {stuck_s:.0f}s: "
            f"{self.relay.last_error}"
        )


@contextmanager
def settled_heap() -> Iterator[None]:
    """Keep the garbage collector off what start-up built, and collect the young less often.

    The objects alive after start-up (modules, the app and its schemas, the playbook, the Kafka
    clients) are hundreds of thousands; every full collection walked them all. Frozen, they are
    not walked again, and the requests' and batches' own objects are still collected: ingest's
    CPU per request of 100 events under wrk went from about 7.6 to 4.2 ms (4.6 ms with the
    freeze alone); in scoring the collector had taken ~35% of the CPU per event. The app
    factory (shared/http.py) holds every service in it while it serves; undone at shutdown.
    """
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000)  # young collections every 10,000 allocations instead of 700
    gc.callbacks.append(_time_collections)
    try:
        with survivors_settled():  # and each consumer batch's survivors (shared/heap.py)
            yield
    finally:
        gc.callbacks.remove(_time_collections)
        gc.set_threshold(*threshold)
        gc.unfreeze()


_PAUSES = [GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]
_CPU = [GC_CPU_SECONDS.labels(str(generation)) for generation in range(3)]
_collecting_since = [0.0, 0.0]  # wall clock, this thread's CPU clock


def _time_collections(phase: str, info: dict[str, int]) -> None:
    """A gc callback: each collection's pause and CPU, by generation (a stall every request
    and batch in flight waits through, and the tail's usual suspect)."""
    if phase == "start":
        _collecting_since[:] = time.perf_counter(), time.thread_time()
    else:
        _PAUSES[info["generation"]].observe(time.perf_counter() - _collecting_since[0])
        _CPU[info["generation"]].inc(time.thread_time() - _collecting_since[1])
