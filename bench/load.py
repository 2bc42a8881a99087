"""Background traffic for the speed-to-lead and scale scenarios, in its own process: `rate`
events/s posted in batches of 50, until killed. Non-qualifying page views by default; with a
third argument N, one event in N is a demo request by a new lead (a handoff follows), so the
handoff service has work proportional to the load too; a fourth, comma-separated countries,
gives those leads each country in turn (a playbook routing by country spreads them over teams).

    python -m bench.load URL RATE [QUALIFYING_EVERY [COUNTRIES]]
"""

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx


async def main(
    url: str, rate: int, qualifying_every: int = 0, countries: tuple[str, ...] = ("DE",)
) -> None:
    per_request = 50
    interval_s = per_request / rate
    async with httpx.AsyncClient(timeout=30) as client:
        next_at = time.perf_counter()
        pending: set[asyncio.Task[httpx.Response]] = set()
        n = 0
        while True:
            occurred = datetime.now(UTC).isoformat()
            body: list[dict[str, Any]] = []
            for _ in range(per_request):
                n += 1
                if qualifying_every and n % qualifying_every == 0:
                    body.append(
                        {
                            "id": f"bq-{uuid.uuid4()}",
                            "identity": {"email": f"buyer-{uuid.uuid4().hex[:12]}@load.example"},
                            "attributes": {
                                "company": "Load",
                                "company_size": 500,
                                "country": countries[n // qualifying_every % len(countries)],
                            },
                            "activity": {"type": "demo_request", "occurred_at": occurred},
                        }
                    )
                    continue
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
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]),
            int(sys.argv[3]) if len(sys.argv) > 3 else 0,
            tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else ("DE",),
        )
    )
