"""Which waiting requests the next group-commit transaction takes (pure, no Kafka)."""

from collections import deque

from services.ingest.publisher import Record, _Waiting, take_group

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
