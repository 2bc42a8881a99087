"""Background traffic for the speed-to-lead scenario, in its own process: `rate` events/s of
non-qualifying page views, posted in batches of 50, until killed."""

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx


async def main(url: str, rate: int) -> None:
    per_request = 50
    interval_s = per_request / rate
    async with httpx.AsyncClient(timeout=30) as client:
        next_at = time.perf_counter()
        pending: set[asyncio.Task[httpx.Response]] = set()
        n = 0
        while True:
            occurred = datetime.now(UTC).isoformat()
            body = []
            for _ in range(per_request):
                n += 1
                body.append(
                    {
                        "id": f"bg-{uuid.uuid4()}",
                        "identity": {"email": f"background{n % 20000}@load.example"},
                        "attributes": {"company": "Load"},
                        "activity": {"type": "email_open", "occurred_at": occurred},
                    }
                )
            task = asyncio.create_task(client.post(f"{url}/v1/events", json=body))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
