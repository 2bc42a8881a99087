"""Group commit without Kafka: which waiting requests the next transaction takes, what a
group whose transaction fails is answered, and which partition a record goes to."""

import asyncio
from collections import deque

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.publisher import (
    PublishFailed,
    Record,
    RequestPublisher,
    _Waiting,
    murmur2,
    take_group,
)
from shared.settings import Settings

RECORD = Record("t", b"v", b"k", [])


async def waiting(records: int) -> _Waiting:
    return _Waiting([RECORD] * records, queued_at=0.0)


async def test_takes_the_oldest_requests_that_fit_and_leaves_the_rest_in_order():
    queue = deque([await waiting(n) for n in (3, 4, 2, 1)])
    first, second, third, fourth = queue
    assert take_group(queue, max_records=8) == [first, second]  # 3 + 4; adding 2 would be 9
    assert list(queue) == [third, fourth]
    assert take_group(queue, max_records=8) == [third, fourth]
    assert not queue


async def test_a_request_over_the_limit_still_goes_alone():
    queue = deque([await waiting(10), await waiting(1)])
    big, small = queue
    assert take_group(queue, max_records=4) == [big]
    assert take_group(queue, max_records=4) == [small]


async def test_a_group_whose_transaction_and_abort_both_fail_gets_no_202():
    # No Kafka: the transaction fails and so does the abort; every request must still be
    # answered with PublishFailed (a 503), and the committer must take the next group.
    publisher = RequestPublisher(Settings(ingest_kafka_producers=1), lambda: None)  # type: ignore[arg-type, return-value]
    attempts = []

    async def failing_transaction(slot, records):
        attempts.append(len(records))
        raise KafkaError("broker gone")

    async def failing_abort(slot):
        raise RuntimeError("abort failed too")

    publisher._transaction = failing_transaction  # type: ignore[method-assign]
    publisher._abort = failing_abort  # type: ignore[method-assign]
    publisher._producers = {0: None}
    publisher._committers = [asyncio.create_task(publisher._commit_loop(0))]
    try:
        first = await asyncio.gather(
            publisher.publish([RECORD]), publisher.publish([RECORD] * 2), return_exceptions=True
        )
        second = await asyncio.gather(publisher.publish([RECORD]), return_exceptions=True)
    finally:
        await publisher.stop()
    assert all(isinstance(o, PublishFailed) for o in first + second), first + second
    assert attempts == [3, 1]  # one group of both requests, then the next on its own


def _faked(publisher: RequestPublisher, transaction) -> None:  # type: ignore[no-untyped-def]
    publisher._transaction = transaction  # type: ignore[method-assign]
    publisher._producers = dict.fromkeys(range(len(publisher._ids)))
    publisher._committers = [
        asyncio.create_task(publisher._commit_loop(slot)) for slot in publisher._producers
    ]


async def test_one_transaction_in_flight_and_the_producers_take_turns():
    # LEADROUTER_INGEST_TRANSACTIONS_IN_FLIGHT=1: requests that come while a transaction is in
    # flight wait and share the next one; a producer is not reused while another rests.
    publisher = RequestPublisher(
        Settings(ingest_kafka_producers=3, ingest_transactions_in_flight=1),
        lambda: None,  # type: ignore[arg-type, return-value]
    )
    in_flight: list[int] = []
    most = 0
    slots: list[int] = []
    sizes: list[int] = []

    async def transaction(slot: int, records: list[Record]) -> None:
        nonlocal most
        in_flight.append(slot)
        most = max(most, len(in_flight))
        slots.append(slot)
        sizes.append(len(records))
        await asyncio.sleep(0.01)
        in_flight.remove(slot)

    async def arriving(delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await publisher.publish([RECORD])

    _faked(publisher, transaction)
    try:
        await publisher.publish([RECORD])  # alone: at once, a transaction of its own
        # Requests arriving one by one while transactions are in flight.
        await asyncio.gather(*(arriving(0.002 * n) for n in range(12)))
    finally:
        await publisher.stop()
    assert most == 1
    assert sizes[0] == 1 and sum(sizes) == 13
    assert len(sizes) < 13  # requests that came during a transaction shared the next one
    assert all(a != b for a, b in zip(slots, slots[1:], strict=False)), slots


async def test_a_request_still_queued_when_its_time_is_up_fails_unsent():
    publisher = RequestPublisher(
        Settings(ingest_kafka_producers=1, kafka_publish_timeout_s=0.05),
        lambda: None,  # type: ignore[arg-type, return-value]
    )
    release = asyncio.Event()
    sent: list[int] = []

    async def stuck_transaction(slot: int, records: list[Record]) -> None:
        sent.append(len(records))
        await release.wait()

    _faked(publisher, stuck_transaction)
    try:
        first = asyncio.create_task(publisher.publish([RECORD]))
        await asyncio.sleep(0)  # the committer takes it and gets stuck
        await asyncio.sleep(0)
        queued = await asyncio.gather(publisher.publish([RECORD] * 2), return_exceptions=True)
        assert isinstance(queued[0], PublishFailed), queued
        assert not publisher._queue
        release.set()
        outcome = await asyncio.gather(first, return_exceptions=True)
    finally:
        await publisher.stop()
    assert sent == [1]  # the expired request was never in a transaction
    # The first was in a transaction past its own time: it gets that transaction's outcome
    # (committed here, within the transaction's own budget of at least 1 s).
    assert outcome == [None]


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=80))
def test_records_go_to_the_partition_aiokafkas_default_partitioner_picks(key):
    # Order per lead depends on it: the same key, the same partition as send() would choose.
    assert murmur2(key) == aiokafka_murmur2(key)
    partitions = [0, 1, 2, 5]
    assert partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)] == DefaultPartitioner()(
        key, partitions, partitions
    )
