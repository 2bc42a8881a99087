"""The after-handoff clocks on the board (issue 24) in Debian's Chromium, real services: a lead
escalated to the manager queue, an accepted lead nobody follows up, a lead rejected for bad
timing and one rejected as not a fit; each shows on the SLA board with its dates, and the
funnel counts the recycled ones by reason and by policy."""

import json
from datetime import datetime, timedelta

import httpx
import pytest
import yaml
from playwright.async_api import expect

from harness.events import became_mql
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE
from shared.settings import REPO_ROOT
from tests.e2e.test_board import browser, shot  # noqa: F401 (the fixture)
from tests.helpers import eventually, publish, read_topic

pytestmark = pytest.mark.integration

ESCALATED, QUIET = "boss@queue.example", "quiet@stale.example"
LATER, NOFIT = "later@revisit.example", "nofit@suppress.example"


def playbook_with_fast_clocks() -> dict:
    """Hot leads escalate after 3 seconds; a warm lead's stale reminder comes after about
    3 seconds, its recycle in 30 days; the rest as in the example playbook."""
    playbook = yaml.safe_load((REPO_ROOT / "deploy" / "playbook.example.yaml").read_text())
    sla = playbook["sla"]
    sla["tiers"]["hot"] = {"accept_minutes": 0.05, "contact_minutes": 10}
    sla["max_reassignments"] = 0
    sla["stale"]["tiers"]["warm"] = {"remind_days": 0.00003, "recycle_days": 30}
    assert sla["manager_queue"]["tiers"]["hot"] == 60 and sla["manager_queue"]["warning_at"] == 0.6
    assert sla["reject_policies"]["bad_timing"] == {"policy": "revisit", "days": 90}
    assert sla["reject_policies"]["not_a_fit"] == {"policy": "suppress", "days": 180}
    return playbook


def at(value: str | None) -> datetime:
    assert value, "no date"
    return datetime.fromisoformat(value)


async def test_the_board_shows_the_after_handoff_clocks_and_dates(
    settings,
    services,
    browser,  # noqa: F811
    tmp_path,
):
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(playbook_with_fast_clocks()))
    handoff = services["handoff"]
    handoff.env["LEADROUTER_PLAYBOOK"] = str(path)
    await handoff.start()
    await publish(
        settings,
        LEAD_LIFECYCLE,
        [became_mql(ESCALATED, "hot")] + [became_mql(e, "warm") for e in (QUIET, LATER, NOFIT)],
    )
    async with httpx.AsyncClient() as client:

        async def handoff_of(email: str, status: str | None = None):
            rows = (await client.get(f"{handoff.url}/v1/handoffs", params={"limit": 100})).json()
            found = next((h for h in rows if h["lead_key"] == f"email:{email}"), None)
            return found if found and status in (None, found["status"]) else None

        for email, action, body in (
            (QUIET, "accept", {}),
            (LATER, "reject", {"reason": "bad_timing"}),
            (NOFIT, "reject", {"reason": "not_a_fit"}),
        ):
            h = await eventually(lambda e=email: handoff_of(e), 30, f"{email}'s handoff")
            answer = await client.post(
                f"{handoff.url}/v1/handoffs/{h['handoff_id']}/{action}",
                json={"rep_id": h["rep_id"], **body},
            )
            assert answer.status_code == 200, answer.text
        # The stale reminder went out for the accepted lead (it now shows as sent).
        await read_topic(
            settings,
            settings.topic(HANDOFFS),
            1,
            match=lambda r: (
                r.key == f"email:{QUIET}".encode()
                and json.loads(r.value)["type"] == "leadrouter.handoff.stale_reminder"
            ),
        )
        escalated = await eventually(
            lambda: handoff_of(ESCALATED, "escalated"), 30, "the escalation"
        )
        quiet, later, nofit = [await handoff_of(e) for e in (QUIET, LATER, NOFIT)]

    page = await browser.new_page(viewport={"width": 1500, "height": 1000})
    page.set_default_timeout(15_000)
    await page.goto(f"{handoff.url}/board")
    await expect(page.locator("#live-indicator")).to_have_text("Live")

    # The manager queue's clock, as the SLA clocks are shown: a countdown, warning and breach.
    queued = page.locator(f'table.queue tr[data-handoff="{escalated["handoff_id"]}"]')
    clock = queued.locator(".queue-clock")
    await expect(clock).to_have_attribute("data-state", "ok")
    await expect(clock.locator(".what")).to_have_text("to pick up")
    due = at(escalated["queue_due_at"])
    assert at(await clock.get_attribute("data-due")) == due
    breach_at = await queued.locator("time.queue-breach-at").get_attribute("datetime")
    warn_at = await queued.locator("time.queue-warn-at").get_attribute("datetime")
    assert at(breach_at) == due
    assert at(warn_at) == due - timedelta(minutes=24)  # 60% of the hot queue's 60 minutes

    # The accepted lead without feedback: since when, the reminder sent, the recycle date.
    stale = page.locator(f'tr[data-handoff="{quiet["handoff_id"]}"] td.stale')
    await expect(stale.locator(".stale-reminder")).to_contain_text("reminder sent")
    since = await stale.locator(".stale-since time").get_attribute("datetime")
    assert at(since) == at(quiet["accepted_at"])
    recycle = await stale.locator(".stale-recycle time").get_attribute("datetime")
    assert at(recycle) == at(quiet["accepted_at"]) + timedelta(days=30)
    await expect(stale.locator(".stale-recycle")).to_contain_text("recycled as stale on")

    # The rejected leads their reject policy holds, with the date each waits for.
    waits = page.locator("table.policy-waits")
    revisit = waits.locator(f'tr[data-handoff="{later["handoff_id"]}"]')
    await expect(revisit).to_have_attribute("data-policy", "revisit")
    await expect(revisit.locator(".policy-until")).to_contain_text("back to routing on")
    revisit_at = await revisit.locator(".policy-until time").get_attribute("datetime")
    assert at(revisit_at) == at(later["revisit_at"])
    assert at(later["revisit_at"]) - at(later["closed_at"]) == timedelta(days=90)
    suppressed = waits.locator(f'tr[data-handoff="{nofit["handoff_id"]}"]')
    await expect(suppressed).to_have_attribute("data-policy", "suppress")
    await expect(suppressed.locator(".policy-until")).to_contain_text("unless its fit changes")
    until = await suppressed.locator(".policy-until time").get_attribute("datetime")
    assert at(until) == at(nofit["suppressed_until"])
    assert at(nofit["suppressed_until"]) - at(nofit["closed_at"]) == timedelta(days=180)
    await shot(page, "board-after-handoff")

    # The funnel counts the recycled leads by reason and by policy.
    await page.get_by_role("link", name="Funnel").click()
    recycled = page.locator("#recycled-by-reason")
    for attribute, value in (
        ("reason", "bad_timing"),
        ("reason", "not_a_fit"),
        ("policy", "revisit"),
        ("policy", "suppress"),
    ):
        await expect(recycled.locator(f'tr[data-{attribute}="{value}"] td.n')).to_have_text("1")
