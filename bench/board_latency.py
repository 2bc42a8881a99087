"""`python -m bench.board_latency`: how soon a handoff from a Kafka event shows on the board.

A real handoff service on a fresh database and topic namespace, the board open in Debian's
Chromium, and `became_mql` lifecycle events published one at a time. For each, the time from
Kafka's ack of the event to the row appearing in the page (a MutationObserver stamps it),
split into the part up to the handoff's transaction (its `created_at`) and the rest
(commit, NOTIFY, server-sent event, fragment reload, render).
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import asyncpg
from playwright.async_api import async_playwright

from bench.env import drop_databases, fresh_settings, progress
from harness.browser import CHROMIUM, CHROMIUM_ARGS
from harness.events import became_mql
from harness.processes import Service
from shared.kafka import LEAD_LIFECYCLE, ensure_topics, make_producer

WATCH_ROWS = """
window.seen = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll('tr[data-lead]')) {
    if (!(row.dataset.lead in window.seen)) window.seen[row.dataset.lead] = Date.now();
  }
}).observe(document.getElementById('fragment'), {childList: true, subtree: true});
"""


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "median_ms": round(statistics.median(ordered)),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))]),
        "max_ms": round(ordered[-1]),
    }


async def run(leads: int) -> dict:
    settings = await fresh_settings()
    await ensure_topics(settings)
    service = Service("handoff", settings, Path(os.environ.get("TMPDIR", "/tmp")))
    await service.start()
    producer = make_producer(settings)
    await producer.start()
    dsn = settings.database_url.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{service.url}/board")
            await page.wait_for_selector("#live-indicator[data-state=live]")
            await page.evaluate(WATCH_ROWS)
            total, to_commit = [], []
            for i in range(leads):
                email = f"lead{i}@latency.example"
                event = became_mql(email, source="bench")
                await producer.send_and_wait(
                    settings.topic(LEAD_LIFECYCLE), event.to_bytes(), key=event.subject.encode()
                )
                acked_ms = time.time() * 1000
                await page.wait_for_function(
                    f"window.seen['email:{email}'] !== undefined", timeout=10_000
                )
                shown_ms = await page.evaluate(f"window.seen['email:{email}']")
                created = await conn.fetchval(
                    "select created_at from handoffs where lead_key = $1", f"email:{email}"
                )
                total.append(shown_ms - acked_ms)
                to_commit.append(created.timestamp() * 1000 - acked_ms)
                progress(
                    f"lead {i + 1}/{leads}: on the board {shown_ms - acked_ms:.0f} ms after ack"
                )
                await asyncio.sleep(0.3)  # one change at a time, as a board sees them live
            await browser.close()
    finally:
        await conn.close()
        await producer.stop()
        service.stop()
    return {
        "kafka_ack_to_row_on_board": summary(total),
        "kafka_ack_to_handoff_transaction": summary(to_commit),
        "leads": leads,
    }


async def main(leads: int) -> dict:
    try:
        return await run(leads)
    finally:
        await drop_databases()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.board_latency", description=__doc__)
    parser.add_argument("--leads", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.leads)), indent=2))
