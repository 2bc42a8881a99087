"""The board as a person uses it: Debian's Chromium driven by Playwright, real services.

A qualifying lead posted to ingest appears on the open page without a reload (the live
feed), its countdown runs, a rep accepts it from the page, a manager marks a rep out of
office, someone opens the lead and reads its explanation, and marketing reads the funnel.
Screenshots of each page land in tests/e2e/artifacts/ (ignored by git).
"""

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.async_api import Browser, Page, async_playwright, expect

from harness.browser import CHROMIUM, CHROMIUM_ARGS
from harness.events import became_mql
from shared.auth import key_file_line, new_key
from shared.kafka import GOALS, LEAD_LIFECYCLE
from shared.settings import REPO_ROOT
from tests.helpers import publish, read_topic

pytestmark = pytest.mark.integration

HAVE_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(__file__).parent / "artifacts"
EMAIL = "vera@bigdeal.example"
LEAD = f"email:{EMAIL}"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (installed by deploy/infra/chromium.sh, never downloaded)."""
    if not HAVE_CHROMIUM:
        pytest.fail("no /usr/bin/chromium: run `make infra-up` (deploy/infra/chromium.sh up)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def qualifying_events() -> list[dict]:
    """A VP at a 250-person company reads pricing (45 points), then asks for a demo (85, hot)."""
    now = datetime.now(UTC).isoformat()
    identity = {"email": EMAIL, "external_ids": {"hubspot": "987"}}
    return [
        {
            "id": "board-1",
            "identity": identity,
            "attributes": {"company": "Bigdeal", "company_size": 250, "job_title": "VP Sales"},
            "activity": {"type": "pricing_page_view", "occurred_at": now},
        },
        {
            "id": "board-2",
            "identity": identity,
            "activity": {"type": "demo_request", "occurred_at": now},
        },
    ]


async def test_the_board_live_in_a_browser(settings, services, browser):
    scoring, handoff, ingest = services["scoring"], services["handoff"], services["ingest"]
    handoff.env["LEADROUTER_SCORING_URL"] = scoring.url
    await asyncio.gather(scoring.start(), handoff.start(), ingest.start())
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(15_000)

    # The SLA board, open before the lead exists, and live.
    await page.goto(f"{handoff.url}/board")
    await expect(page.locator("#live-indicator")).to_have_text("Live")
    await expect(page.get_by_text("No open handoffs")).to_be_visible()
    await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    async with httpx.AsyncClient() as client:
        accepted = await client.post(f"{ingest.url}/v1/events", json=qualifying_events())
        assert accepted.status_code == 202, accepted.text

        row = page.locator(f'tr[data-lead="{LEAD}"]')
        await expect(row).to_be_visible()
        assert await page.evaluate("window.loadedOnce") is True, "the page reloaded"
        await expect(row.locator(".tier")).to_have_text("hot")
        await expect(row.locator(".status")).to_have_text("assigned")

        # The accept clock runs down in the page, second by second.
        left = row.locator(".countdown .left")
        first = await left.text_content()
        await expect(left).not_to_have_text(first or "", timeout=3_000)
        minutes, seconds = (await left.text_content() or "").split(":")
        assert 0 < int(minutes) * 60 + int(seconds) < 300  # hot: accept within 5 minutes
        await expect(row.locator(".countdown .what")).to_have_text("to accept")
        await shot(page, "board-sla")

        # Filters narrow the board and stay in the address.
        await page.get_by_label("Team").select_option("enterprise")
        await expect(page.get_by_text("No open handoffs for these filters")).to_be_visible()
        await expect(page).to_have_url(f"{handoff.url}/board?team=enterprise")
        await page.get_by_label("Team").select_option("sales")
        await expect(row).to_be_visible()

        # A choice not yet sent survives a live refresh caused by someone else's change.
        reason = row.get_by_label("Reject reason")
        await reason.select_option("no_budget")
        await page.evaluate("document.querySelector('#fragment > div').dataset.before = 'yes'")
        away = await client.put(
            f"{handoff.url}/v1/reps/rep-ben/availability", json={"available": False}
        )
        assert away.status_code == 200
        await expect(page.locator("#fragment [data-before]")).to_have_count(0)  # refreshed
        await expect(reason).to_have_value("no_budget")

        # A manager of the team accepts it for the rep, from the page, with the keyboard.
        await page.get_by_label("Give feedback as").select_option("mgr-maya")
        await row.get_by_role("button", name=f"Accept {EMAIL}").focus()
        await page.keyboard.press("Enter")
        await expect(row.locator(".status")).to_have_text("accepted")
        await expect(row.locator(".countdown .what")).to_have_text("to contact")
        await expect(row.get_by_role("button", name=f"Contact {EMAIL}")).to_be_focused()
        handoff_id = await row.get_attribute("data-handoff")
        api = (await client.get(f"{handoff.url}/v1/handoffs/{handoff_id}")).json()
        assert api["status"] == "accepted" and api["accepted_at"]

        # A manager marks a rep out of office.
        await page.get_by_role("link", name="Reps").click()
        eli = page.locator("#rep-rep-eli")
        await expect(eli.locator(".availability")).to_have_text("available")
        await eli.get_by_role("button", name="Mark out of office").click()
        await expect(eli.locator(".availability")).to_have_text("out of office")
        await expect(eli.get_by_role("button", name="Mark available")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text("Eli Novak is now out of office")
        reps = {r["rep_id"]: r for r in (await client.get(f"{handoff.url}/v1/reps")).json()}
        assert reps["rep-eli"]["available"] is False
        await shot(page, "board-reps")

        # Open the lead and read why it scored.
        await page.get_by_label("Open a lead").fill(EMAIL)
        await page.keyboard.press("Enter")
        await expect(page.locator("h1")).to_have_text(f"Lead {LEAD}")
        explanation = page.locator("table.explanation")
        await expect(explanation.get_by_role("row", name="behaviour:demo_request")).to_contain_text(
            "+40"
        )
        await expect(explanation).to_contain_text("fit:large_company")
        await expect(page.locator(".timeline")).to_contain_text("accepted by")
        await expect(page.locator(".timeline")).to_contain_text(
            "activity: demo_request (+40 points)"
        )
        await expect(page.locator("#lead-identities")).to_contain_text("hubspot:987")
        lead = (await client.get(f"{scoring.url}/v1/leads/{LEAD}")).json()
        await expect(page.locator("#lead-score")).to_have_text(f"{lead['score']:g}")
        await shot(page, "board-lead")

        # The funnel for today: one lead, one MQL, its handoff accepted within the SLA.
        today = datetime.now(UTC).date().isoformat()
        await page.get_by_role("link", name="Funnel").click()
        await page.get_by_label("From").fill(today)
        await page.get_by_label("To (inclusive)").fill(today)
        await page.get_by_role("button", name="Show").click()
        await expect(page).to_have_url(f"{handoff.url}/board/funnel?since={today}&until={today}")
        await expect(page.locator('tr[data-stage="mqls"] td.n')).to_have_text("1")
        await expect(page.locator("#sla-overall")).to_have_text("100%")
        await expect(page.locator("svg.bars").first).to_be_visible()
        await shot(page, "board-funnel")

        await page.get_by_role("link", name="Playbook").click()
        await expect(page.get_by_role("heading", name="Routing")).to_be_visible()
        await shot(page, "board-playbook")


async def test_a_countdown_warns_then_breaches_and_the_lead_moves_on(
    settings, services, browser, tmp_path
):
    """With a 6-second accept SLA, the page shows the warning, the breach and the reassignment."""
    playbook = yaml.safe_load((REPO_ROOT / "deploy" / "playbook.example.yaml").read_text())
    playbook["sla"]["tiers"]["hot"] = {"accept_minutes": 0.1, "contact_minutes": 1}
    playbook["sla"]["warning_at"] = 0.5
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(playbook))
    handoff = services["handoff"]
    handoff.env["LEADROUTER_PLAYBOOK"] = str(path)
    await handoff.start()
    page = await browser.new_page(viewport={"width": 1400, "height": 700})
    await page.goto(f"{handoff.url}/board?tier=hot")
    await expect(page.locator("#live-indicator")).to_have_text("Live")

    await publish(settings, LEAD_LIFECYCLE, [became_mql("ida@fast.example")])
    row = page.locator('tr[data-lead="email:ida@fast.example"]')
    clock = row.locator(".countdown")
    await expect(clock).to_have_attribute("data-state", "ok", timeout=15_000)
    await expect(clock.locator(".flag")).to_have_text("Warning", timeout=6_000)
    await shot(page, "board-sla-warning")
    # the breach timer fires and reassigns; the page follows without a reload
    # the earlier rep by name, as the playbook calls them
    await expect(row).to_contain_text(
        re.compile(r"reassigned 1× \(from (Ana Lima|Ben Okafor|Chen Wei)\)"), timeout=15_000
    )
    await expect(row.locator(".badge.breached")).to_have_text("breached")
    await shot(page, "board-sla-reassigned")

    # An open board does not hold up a graceful stop: its live stream ends on SIGTERM.
    handoff.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(handoff.process.wait, 30) in (0, -signal.SIGTERM)
    log = handoff.log_path.read_text()
    assert "handoff: stopped" in log
    assert "timeout graceful shutdown exceeded" not in log
    await expect(page.locator("#live-indicator")).to_have_text("Reconnecting…")


async def test_the_board_with_api_keys_asks_for_one_and_shows_what_its_scopes_allow(
    settings, services, browser, tmp_path
):
    """With a key file the page works only with a key: read-only shows no actions, a sales
    key accepts from the page, and the lead page reads scoring with the viewer's own key."""
    reader, sales, writer = new_key(), new_key(), new_key()
    keys = tmp_path / "api-keys"
    keys.write_text(
        key_file_line("manager-screen", reader, ["handoffs:read"])
        + "\n"
        + key_file_line("sales-desk", sales, ["handoffs:read", "feedback:write", "leads:read"])
        + "\n"
        + key_file_line("website", writer, ["events:write"])
        + "\n"
    )
    scoring, handoff, ingest = services["scoring"], services["handoff"], services["ingest"]
    for service in (scoring, handoff, ingest):
        service.env["LEADROUTER_API_KEYS_FILE"] = str(keys)
    handoff.env["LEADROUTER_SCORING_URL"] = scoring.url
    await asyncio.gather(scoring.start(), handoff.start(), ingest.start())
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(15_000)

    await page.goto(f"{handoff.url}/board")
    await expect(page.get_by_role("status")).to_contain_text("Enter an API key above")

    await page.get_by_label("API key").fill(reader)
    await page.get_by_role("button", name="Use key").click()
    await expect(page.get_by_text("No open handoffs")).to_be_visible()
    await expect(page.locator("#live-indicator")).to_have_text("Live")

    async with httpx.AsyncClient() as client:
        accepted = await client.post(
            f"{ingest.url}/v1/events",
            json=qualifying_events(),
            headers={"Authorization": f"Bearer {writer}"},
        )
        assert accepted.status_code == 202, accepted.text
    row = page.locator(f'tr[data-lead="{LEAD}"]')
    await expect(row).to_be_visible()  # live, with the key the page holds
    await expect(row.locator(".status")).to_have_text("assigned")
    await expect(row.get_by_role("button", name=f"Accept {EMAIL}")).to_have_count(0)
    await shot(page, "board-keys-read-only")

    await page.get_by_label("API key").fill(sales)
    await page.get_by_role("button", name="Use key").click()
    accept = row.get_by_role("button", name=f"Accept {EMAIL}")
    await expect(accept).to_be_visible()
    await page.get_by_label("Give feedback as").select_option("mgr-maya")
    await accept.click()
    await expect(row.locator(".status")).to_have_text("accepted")

    await page.get_by_label("Open a lead").fill(EMAIL)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text(f"Lead {LEAD}")
    await expect(page.locator("table.explanation")).to_contain_text("fit:large_company")


async def test_the_goals_page_shows_both_teams_commitments_live(settings, services, browser):
    """Marketing's and sales' goals side by side, the same figures as GET /v1/goals, live;
    the status changes go out on the goals topic; the weekly meeting page is served too."""
    handoff = services["handoff"]
    handoff.env["LEADROUTER_GOALS_CHECK_INTERVAL_S"] = "1"
    await handoff.start()
    await publish(settings, LEAD_LIFECYCLE, [became_mql(f"g{n}@goals.example") for n in range(3)])
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    async with httpx.AsyncClient() as client:
        for _ in range(60):  # the three handoffs are routed
            if len((await client.get(f"{handoff.url}/v1/handoffs")).json()) == 3:
                break
            await asyncio.sleep(0.25)
        await page.goto(f"{handoff.url}/board")
        await page.get_by_role("link", name="Goals", exact=True).click()
        await expect(page).to_have_url(f"{handoff.url}/board/goals")
        await expect(page.locator("#live-indicator")).to_have_text("Live")
        mqls = page.locator('[data-side="marketing"] article[data-goal="mqls-per-month"]')
        await expect(mqls.locator(".actual")).to_have_text("3")
        await expect(
            page.locator('[data-side="sales"] article[data-goal="accept-sla"]')
        ).to_be_visible()
        await expect(
            page.locator('[data-side="both"] article[data-goal="sqls-per-month"]')
        ).to_be_visible()
        await expect(mqls.locator("svg.goal-bar .fill")).to_be_attached()
        api = (await client.get(f"{handoff.url}/v1/goals")).json()
        for goal in api["goals"]:
            card = page.locator(f'article[data-goal="{goal["goal_id"]}"]')
            await expect(card).to_have_attribute("data-status", goal["status"])
            await expect(card.locator(".target")).not_to_have_text("")
        await expect(page.locator("#gap-stage")).to_have_attribute(
            "data-stage", api["gap_stage"] or ""
        )
        await page.evaluate("window.loadedOnce = true")
        await publish(settings, LEAD_LIFECYCLE, [became_mql("g3@goals.example")])
        await expect(mqls.locator(".actual")).to_have_text("4")  # live, without a reload
        assert await page.evaluate("window.loadedOnce") is True
        await shot(page, "board-goals")

    changes = await read_topic(
        settings,
        settings.topic(GOALS),
        1,
        match=lambda r: json.loads(r.value)["data"]["goal_id"] == "mqls-per-month",
    )
    assert json.loads(changes[0].value)["type"] == "leadrouter.goal.status_changed"

    await page.get_by_role("link", name="Weekly meeting").click()
    # the first report draws its charts (matplotlib's first import): allow a loaded machine time
    await expect(page.locator('#report-goals tr[data-goal="mqls-per-month"]')).to_be_visible(
        timeout=30_000
    )
    await expect(page.locator('#report-funnel tr[data-stage="mqls"] td.this')).to_have_text("4")
    await expect(page.locator(".report img").first).to_be_visible()
    await shot(page, "board-report")
