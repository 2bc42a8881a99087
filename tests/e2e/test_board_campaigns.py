"""The board's campaign page in Debian's Chromium: the funnel by campaign, a chart, and what
sales heard, read as marketing would."""

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.test_board import browser, shot  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

EMAIL = "cora@spring.example"


async def test_marketing_reads_campaigns_and_an_insight_on_the_board(settings, services, browser):  # noqa: F811
    scoring, handoff, ingest = services["scoring"], services["handoff"], services["ingest"]
    await asyncio.gather(scoring.start(), handoff.start(), ingest.start())
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "id": "camp-1",
            "identity": {"email": EMAIL},
            "attributes": {"company": "Spring", "company_size": 250, "job_title": "VP Sales"},
            "activity": {"type": "demo_request", "occurred_at": now},
            "touch": {"source": "google", "medium": "cpc", "campaign": "board-spring"},
        },
        {
            "id": "camp-2",
            "identity": {"email": "otto@other.example"},
            "activity": {"type": "email_open", "occurred_at": now},
        },
    ]
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{ingest.url}/v1/events", json=events)).status_code == 202

        async def cora():
            rows = (await client.get(f"{handoff.url}/v1/handoffs")).json()
            return next((h for h in rows if h["email"] == EMAIL), None)

        for _ in range(60):
            found = await cora()
            if found:
                break
            await asyncio.sleep(0.5)
        assert found, "no handoff for the campaign's lead"
        accepted = await client.post(
            f"{handoff.url}/v1/handoffs/{found['handoff_id']}/accept",
            json={
                "rep_id": found["rep_id"],
                "tags": {"objection": ["price"], "persona": ["head_of_sales"]},
                "note": "Loved the demo, price is the blocker",
            },
        )
        assert accepted.status_code == 200, accepted.text

    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(15_000)
    await page.goto(f"{handoff.url}/board")
    await page.get_by_role("link", name="Campaigns").click()
    spring = page.locator('table.campaigns tr[data-group="board-spring"]')
    await expect(spring.locator("td.mqls")).to_have_text("1")
    await expect(spring.locator("td.leads")).to_have_text("1")
    await expect(page.locator('table.campaigns tr[data-group=""] td.leads')).to_have_text("1")
    await expect(page.get_by_role("img", name="MQLs per campaign")).to_be_visible()
    insight = page.locator('table.insights tr[data-insights="board-spring"]')
    await expect(insight).to_contain_text("objection: price (1)")
    await expect(insight.locator("q.note")).to_have_text("Loved the demo, price is the blocker")
    await shot(page, "board-campaigns")

    # By routing rule: the same handoff under its rule, the insight there too.
    await page.get_by_label("By", exact=True).select_option("routing_rule")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#insights-heading")).to_have_text(
        "What sales heard, by routing rule"
    )
    await expect(page.locator("table.campaigns tbody tr")).to_have_count(1)
    await expect(page.locator("table.campaigns td.leads")).to_have_text("–")
