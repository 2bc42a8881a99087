"""Background loops stop when cancelled, even when the cancel meets a wake-up."""

import asyncio

from shared.wakeup import sleep_until_woken


async def _loop(wake: asyncio.Event) -> None:
    while True:  # the shape of the outbox relay, the timer runner and the webhook workers
        await sleep_until_woken(wake, 0.5)
        wake.clear()


async def test_a_cancel_that_arrives_with_a_wake_up_stops_the_loop() -> None:
    wake = asyncio.Event()
    task = asyncio.create_task(_loop(wake))
    await asyncio.sleep(0)
    wake.set()
    task.cancel()  # in the same loop iteration: the last commit at shutdown wakes the relay
    done, _ = await asyncio.wait([task], timeout=2)
    assert done, "the loop ignored its cancel (asyncio.wait_for on Python 3.11 does)"
    assert task.cancelled()


async def test_it_returns_on_a_wake_up_and_after_the_timeout() -> None:
    wake = asyncio.Event()
    wake.set()
    await asyncio.wait_for(sleep_until_woken(wake, 60), 1)
    wake.clear()
    await asyncio.wait_for(sleep_until_woken(wake, 0.01), 1)
