"""Background loops sleep until woken or a timeout passes, and still stop when cancelled."""

import asyncio


async def sleep_until_woken(wake: asyncio.Event, timeout_s: float) -> None:
    """Return when `wake` is set or after `timeout_s`; a cancel always propagates.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancel that arrives in the same
    loop iteration as the wake-up, so a loop woken by its last commit at shutdown never
    ends and the service hangs on SIGTERM. `asyncio.timeout` does not lose the cancel.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await wake.wait()
    except TimeoutError:
        pass
