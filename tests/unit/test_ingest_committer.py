"""Group commit without Kafka: which waiting requests the next transaction takes, and what
a group whose transaction fails is answered."""

import asyncio
from collections import deque

from aiokafka.errors import KafkaError

from services.ingest.publisher import PublishFailed, Record, RequestPublisher, _Waiting, take_group
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
