"""Advisory offset commits while Kafka is paused: their failure is logged, never left to
asyncio's "Task exception was never retrieved" (a private broker, the `pausable_kafka`
fixture, port LEADROUTER_TEST_PAUSABLE_KAFKA_PORT)."""

import asyncio
import gc
import logging
import os
import signal
from typing import Any

import pytest
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from shared.consumer import TransactionalConsumer
from shared.db import make_engine, make_sessionmaker
from shared.kafka import LEAD_EVENTS
from tests.helpers import activity_event, eventually, publish

pytestmark = pytest.mark.integration

COMMIT_ERRORS = (
    CommitFailedError,
    UnknownMemberIdError,
    IllegalGenerationError,
    RebalanceInProgressError,
)


@pytest.mark.xdist_group("pausable_kafka")
async def test_an_advisory_commit_cut_off_by_a_kafka_pause_fails_quietly(
    settings, pausable_kafka: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, pid = pausable_kafka
    settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    topic = settings.topic(LEAD_EVENTS)
    gc.collect()  # what earlier tests left is reported now, not below
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    engine = make_engine(settings.database_url, pool_size=5)
    handled: list[str] = []

    async def handler(session, batch):
        handled.extend(d.event.id for d in batch)

    consumer = TransactionalConsumer(
        name="advisory-test",
        group_id="advisory-test-group",
        topics=[topic],
        bootstrap=bootstrap,
        sessions=make_sessionmaker(engine),
        handler=handler,
        relay="advisory-test",
        poll_timeout_ms=100,
    )
    caplog.set_level(logging.INFO, logger="shared.consumer")
    events = [activity_event(f"adv{i}@acme.example", "page_view", i) for i in range(6)]
    await publish(settings, LEAD_EVENTS, events)
    await consumer.start()
    running = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _true(len(handled) == 6), 60, "the events processed")
        os.kill(pid, signal.SIGSTOP)
        try:
            # Sent while the broker is paused: it outlasts its wait; the session expires.
            await consumer.commit_advisory(wait_s=1.0)
            assert consumer._advisory_in_flight is not None
            assert not consumer._advisory_in_flight.done()
            await asyncio.sleep(20)
        finally:
            os.kill(pid, signal.SIGCONT)
        in_flight = consumer._advisory_in_flight
        await asyncio.wait([in_flight], timeout=60)
        assert in_flight.done()
    finally:
        consumer.request_stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await consumer.stop()
        await engine.dispose()
    gc.collect()  # an exception nobody retrieved is reported when its task is collected
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    about_commits = [
        f"{c.get('message')}: {c.get('exception')!r} {c.get('future') or c.get('task')!r}"[:400]
        for c in unretrieved
        if "commit" in repr(c.get("future") or c.get("task")).lower()
        or isinstance(c.get("exception"), COMMIT_ERRORS)
    ]
    assert about_commits == []
    # Anything else asyncio reported (a broker connection's future, say) is not this test's.
    print(f"other asyncio reports: {[c.get('message') for c in unretrieved]}")
    if in_flight.exception() is not None:
        assert "advisory offset commit not taken" in caplog.text
    print(f"the commit after the pause: {in_flight.exception()!r}")


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
