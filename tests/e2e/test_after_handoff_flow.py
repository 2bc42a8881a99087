"""After the handoff (issue 24), end to end through ingest, scoring and handoff on real Kafka and
PostgreSQL, read as a sales tool would."""

import json
from datetime import datetime, timedelta

import httpx
import pytest

from harness.events import became_mql
from shared.kafka import HANDOFFS, LEAD_LIFECYCLE
from shared.settings import REPO_ROOT
from tests.helpers import eventually, minutes_ago, publish, read_topic, start_all

pytestmark = pytest.mark.integration


def example_playbook(tmp_path, *changes: tuple[str, str]):
    """The example playbook with each (old, new) text replaced, written to the test's folder."""
    text = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
    for old, new in changes:
        assert old in text, old  # the example still says what the test changes
        text = text.replace(old, new)
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    return path


def types_of(records):
    return [json.loads(r.value)["type"].removeprefix("leadrouter.handoff.") for r in records]


async def test_a_lead_that_turns_hot_after_its_handoff_gets_the_hot_clock(settings, services):
    """The reproduction of issue 24, item 1: warm at handoff, then a demo request."""
    await start_all(services.values())
    ingest, scoring, handoff = (services[s].url for s in ("ingest", "scoring", "handoff"))
    key = "email:eva@midsize.example"
    forms = [
        {
            "id": f"form-{i}",
            "identity": {"email": "eva@midsize.example"},
            "attributes": {"company": "Midsize", "company_size": 300},
            "activity": {"type": "form_submit", "occurred_at": minutes_ago(30 - i)},
        }
        for i in range(2)
    ]
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{ingest}/v1/events", json=forms)).status_code == 202

        async def the_handoff():
            rows = (await client.get(f"{handoff}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == key), None)

        warm = await eventually(the_handoff, 30, "eva's handoff")
        assert (warm["tier"], warm["score"]) == ("warm", 60)
        warm_by = datetime.fromisoformat(warm["accept_by"])
        assert warm_by - datetime.fromisoformat(warm["assigned_at"]) == timedelta(minutes=60)

        demo = {
            "id": "demo-1",
            "identity": {"email": "eva@midsize.example"},
            "activity": {"type": "demo_request", "occurred_at": minutes_ago(1)},
        }
        assert (await client.post(f"{ingest}/v1/events", json=[demo])).status_code == 202

        async def hot():
            current = await the_handoff()
            return current if current and current["tier"] == "hot" else None

        raised = await eventually(hot, 30, "eva's handoff turned hot")
        lead = (await client.get(f"{scoring}/v1/leads/{key}")).json()
        assert (lead["tier"], lead["score"]) == ("hot", 100)
        assert raised["handoff_id"] == warm["handoff_id"] and raised["score"] == 100
        assert {"rule": "behaviour:demo_request", "points": 40} in raised["explanation"]
        # The hot SLA (5 minutes) from the rise, far sooner than the warm deadline.
        hot_by = datetime.fromisoformat(raised["accept_by"])
        assert hot_by < warm_by - timedelta(minutes=50)
        assert 0 < raised["sla_seconds_left"] <= 300

    records = await read_topic(
        settings.kafka_bootstrap,
        settings.topic(HANDOFFS),
        3,
        match=lambda r: r.key == key.encode(),
    )
    # The demo request is also a sales signal (the example playbook's taxonomy.signals).
    assert types_of(records) == ["assigned", "tier_raised", "signal"]
    event = json.loads(records[1].value)["data"]
    assert (event["tier"], event["previous_tier"], event["score"]) == ("hot", "warm", 100)
    assert event["rep_id"] == warm["rep_id"]
    assert datetime.fromisoformat(event["accept_by"]) == hot_by


async def test_a_demo_request_after_the_accept_reaches_the_rep_as_a_signal(settings, services):
    """Item 1's signal: qualified, handed off, accepted; then a demo request tells her rep."""
    await start_all(services.values())
    ingest, handoff = services["ingest"].url, services["handoff"].url
    key = "email:sofia@midsize.example"
    forms = [
        {
            "id": f"sofia-form-{i}",
            "identity": {"email": "sofia@midsize.example"},
            "attributes": {"company": "Midsize", "company_size": 300},
            "activity": {"type": "form_submit", "occurred_at": minutes_ago(30 - i)},
        }
        for i in range(2)
    ]
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{ingest}/v1/events", json=forms)).status_code == 202

        async def the_handoff():
            rows = (await client.get(f"{handoff}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == key), None)

        assigned = await eventually(the_handoff, 30, "sofia's handoff")
        accepted = await client.post(
            f"{handoff}/v1/handoffs/{assigned['handoff_id']}/accept",
            json={"rep_id": assigned["rep_id"]},
        )
        assert accepted.status_code == 200, accepted.text
        demo_at = minutes_ago(1)
        demo = {
            "id": "sofia-demo",
            "identity": {"email": "sofia@midsize.example"},
            "activity": {"type": "demo_request", "occurred_at": demo_at},
        }
        assert (await client.post(f"{ingest}/v1/events", json=[demo])).status_code == 202

    records = await read_topic(
        settings.kafka_bootstrap,
        settings.topic(HANDOFFS),
        4,
        match=lambda r: r.key == key.encode(),
    )
    assert types_of(records) == ["assigned", "accepted", "tier_raised", "signal"]
    raised, signal = (json.loads(r.value)["data"] for r in records[2:])
    assert signal["handoff_id"] == assigned["handoff_id"]
    assert (signal["rep_id"], signal["status"]) == (assigned["rep_id"], "accepted")
    assert signal["signal"]["type"] == "demo_request"
    assert datetime.fromisoformat(signal["signal"]["at"]) == datetime.fromisoformat(demo_at)
    # The signal moves no clock: the deadlines are those the rise in tier set.
    assert signal["contact_by"] == raised["contact_by"]


async def test_a_lead_nobody_works_in_the_manager_queue_goes_back_to_marketing(
    settings, services, tmp_path
):
    """Item 2: the manager queue's clock warns, breaches and recycles with reason unworked."""
    path = example_playbook(
        tmp_path,
        (
            "hot: { accept_minutes: 5, contact_minutes: 15 }",
            "hot: { accept_minutes: 0.05, contact_minutes: 10 }",
        ),  # accept within 3 seconds
        ("max_reassignments: 2", "max_reassignments: 0"),  # escalate at the breach
        ("tiers: { hot: 60, warm: 480, cold: 2880 }", "tiers: { hot: 0.05 }"),
    )
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    await publish(settings, LEAD_LIFECYCLE, [became_mql("idle@acme.example")])
    expected = [
        "assigned",
        "sla_warning",
        "sla_breached",
        "reassigned",
        "manager_queue_warning",
        "manager_queue_breached",
        "recycled",
    ]
    records = await read_topic(
        settings.kafka_bootstrap, settings.topic(HANDOFFS), len(expected), 60
    )
    assert types_of(records) == expected
    events = [json.loads(r.value)["data"] for r in records]
    escalated = events[3]
    assert (escalated["status"], escalated["queue"]) == ("escalated", "sales-manager")
    due = datetime.fromisoformat(escalated["queue_due_at"])
    assert events[4]["queue_due_at"] == escalated["queue_due_at"]
    recycled = events[-1]
    assert (recycled["status"], recycled["reason"], recycled["recycle_policy"]) == (
        "recycled",
        "unworked",
        "recycle",
    )
    assert json.loads(records[-1].value)["time"] >= due.isoformat()[:19]
    async with httpx.AsyncClient() as client:
        row = (await client.get(f"{service.url}/v1/handoffs/{recycled['handoff_id']}")).json()
        funnel = (await client.get(f"{service.url}/v1/funnel")).json()
        metrics = (await client.get(f"{service.url}/metrics")).text
    assert (row["status"], row["reason"], row["closed_at"] is not None) == (
        "recycled",
        "unworked",
        True,
    )
    assert funnel["recycled_by_reason"] == {"unworked": 1}
    assert funnel["recycled_by_policy"] == {"recycle": 1}
    for event in ("warning", "breached"):
        assert (
            f'leadrouter_manager_queue_sla_total{{event="{event}",team="sales",tier="hot"}} 1.0'
            in metrics
        )
    assert (
        'leadrouter_handoffs_recycled_total{policy="recycle",reason="unworked",team="sales"} 1.0'
        in metrics
    )
    assert 'leadrouter_handoff_queue_size{queue="sales-manager",tier="hot"} 0.0' in metrics


def mql_with_fit(email: str, fit_score: float):
    event = became_mql(email, "warm")
    return event.model_copy(update={"data": {**event.data, "fit_score": fit_score}})


async def test_reject_reasons_revisit_suppress_and_merge_as_the_playbook_says(
    settings, services, tmp_path
):
    """Item 4: bad_timing comes back at its date, not_a_fit stays unrouted while its fit holds,
    a duplicate is closed without going back to marketing; the funnel counts each policy."""
    path = example_playbook(
        tmp_path,
        (
            "bad_timing: { policy: revisit, days: 90 }",
            "bad_timing: { policy: revisit, days: 0.00005 }",
        ),  # about four seconds
    )
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    leads = {
        "later@a.example": "bad_timing",
        "nofit@b.example": "not_a_fit",
        "dup@c.example": "duplicate",
    }
    await publish(settings, LEAD_LIFECYCLE, [mql_with_fit(email, 20.0) for email in leads])
    async with httpx.AsyncClient() as client:

        async def handoffs_of(email: str) -> list[dict]:
            rows = (await client.get(f"{service.url}/v1/handoffs", params={"limit": 100})).json()
            return sorted(
                (h for h in rows if h["lead_key"] == f"email:{email}"),
                key=lambda h: h["created_at"],
            )

        for email, reason in leads.items():
            first = (await eventually(lambda e=email: handoffs_of(e), 30, email))[0]
            rejected = await client.post(
                f"{service.url}/v1/handoffs/{first['handoff_id']}/reject",
                json={"reason": reason, "rep_id": first["rep_id"]},
            )
            assert rejected.status_code == 200, rejected.text
        # The same fit: held back; a changed fit: routed (one lead's events keep their order).
        await publish(
            settings,
            LEAD_LIFECYCLE,
            [mql_with_fit("nofit@b.example", 20.0), mql_with_fit("nofit@b.example", 35.0)],
        )

        async def routed_twice(email: str) -> list[dict] | None:
            rows = await handoffs_of(email)
            return rows if len(rows) == 2 else None

        later = await eventually(lambda: routed_twice("later@a.example"), 60, "the revisit")
        assert later[0]["recycle_policy"] == "revisit" and later[0]["revisit_at"]
        assert later[1]["status"] == "assigned"
        assert later[1]["routing_reason"].startswith("revisit after bad_timing: ")
        nofit = await eventually(lambda: routed_twice("nofit@b.example"), 30, "the fit change")
        assert nofit[0]["recycle_policy"] == "suppress" and nofit[0]["suppressed_until"]
        assert nofit[1]["status"] == "assigned"
        assert len(await handoffs_of("dup@c.example")) == 1
        funnel = (await client.get(f"{service.url}/v1/funnel")).json()
        metrics = (await client.get(f"{service.url}/metrics")).text
    assert funnel["recycled_by_policy"] == {"revisit": 1, "suppress": 1, "merge": 1}
    assert funnel["recycled_by_reason"] == {"bad_timing": 1, "not_a_fit": 1, "duplicate": 1}
    assert "leadrouter_routing_suppressed_total 1.0" in metrics
    records = await read_topic(
        settings.kafka_bootstrap,
        settings.topic(HANDOFFS),
        2,
        match=lambda r: r.key == b"email:dup@c.example",
    )
    # A duplicate is closed, not sent back to marketing: no `recycled`.
    assert types_of(records) == ["assigned", "rejected"]
    assert json.loads(records[1].value)["data"]["recycle_policy"] == "merge"


async def test_an_accepted_lead_nobody_works_is_reminded_then_recycled_as_stale(
    settings, services, tmp_path
):
    """Item 3: no feedback after the accept: a reminder, then back to marketing (stale)."""
    path = example_playbook(
        tmp_path,
        (
            "hot: { remind_days: 3, recycle_days: 7 }",
            "hot: { remind_days: 0.00003, recycle_days: 0.00007 }",
        ),  # about 3 and 6 seconds
    )
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    await publish(settings, LEAD_LIFECYCLE, [became_mql("quiet@acme.example")])
    async with httpx.AsyncClient() as client:

        async def the_handoff():
            rows = (await client.get(f"{service.url}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == "email:quiet@acme.example"), None)

        handoff = await eventually(the_handoff, 30, "quiet's handoff")
        accepted = await client.post(
            f"{service.url}/v1/handoffs/{handoff['handoff_id']}/accept",
            json={"rep_id": handoff["rep_id"]},
        )
        assert accepted.status_code == 200, accepted.text
        expected = ["assigned", "accepted", "stale_reminder", "recycled"]
        records = await read_topic(
            settings.kafka_bootstrap, settings.topic(HANDOFFS), len(expected), 60
        )
        assert types_of(records) == expected
        recycled = json.loads(records[-1].value)["data"]
        assert (recycled["status"], recycled["reason"]) == ("recycled", "stale")
        reps = (await client.get(f"{service.url}/v1/reps")).json()
        funnel = (await client.get(f"{service.url}/v1/funnel")).json()
    assert sum(r["open_handoffs"] for r in reps) == 0  # the rep's slot is free again
    assert funnel["recycled_by_reason"] == {"stale": 1}


async def test_a_tier_raise_on_an_accepted_lead_tightens_its_stale_clock(
    settings, services, tmp_path
):
    """Accepted warm (stale after a week), then hot: the hot stale clock runs from the accept."""
    path = example_playbook(
        tmp_path,
        (
            "hot: { remind_days: 3, recycle_days: 7 }",
            "hot: { remind_days: 0.0001, recycle_days: 0.0002 }",
        ),  # about 9 and 17 seconds
    )
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    key = "email:slow@acme.example"
    await publish(settings, LEAD_LIFECYCLE, [became_mql("slow@acme.example", tier="warm")])
    async with httpx.AsyncClient() as client:

        async def the_handoff():
            rows = (await client.get(f"{service.url}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == key), None)

        handoff = await eventually(the_handoff, 30, "slow's handoff")
        assert handoff["tier"] == "warm"
        accepted = await client.post(
            f"{service.url}/v1/handoffs/{handoff['handoff_id']}/accept",
            json={"rep_id": handoff["rep_id"]},
        )
        assert accepted.status_code == 200, accepted.text
        mql = became_mql("slow@acme.example", tier="hot")
        raised = {"transition": "tier_changed", "score": 100, "previous_tier": "warm"}
        hot = mql.model_copy(
            update={"type": "leadrouter.lifecycle.tier_changed", "data": {**mql.data, **raised}}
        )
        await publish(settings, LEAD_LIFECYCLE, [hot])
        expected = ["assigned", "accepted", "tier_raised", "stale_reminder", "recycled"]
        records = await read_topic(
            settings.kafka_bootstrap, settings.topic(HANDOFFS), len(expected), 60
        )
        assert types_of(records) == expected
        recycled = json.loads(records[-1].value)["data"]
        assert (recycled["tier"], recycled["status"], recycled["reason"]) == (
            "hot",
            "recycled",
            "stale",
        )
        accepted_at, recycled_at = (
            datetime.fromisoformat(json.loads(records[i].value)["time"]) for i in (1, -1)
        )
    # The hot clock from the accept (17 s), not the warm one (21 days) nor one from the rise.
    assert timedelta(seconds=17) <= recycled_at - accepted_at < timedelta(minutes=1)


async def test_an_mql_needs_fit_as_well_as_engagement_when_the_playbook_says_so(
    settings, services, tmp_path
):
    """Item 5: no fit at all does not qualify on behaviour alone with `min_fit`."""
    path = example_playbook(
        tmp_path,
        ("qualification: { min_fit: null,", "qualification: { min_fit: 10,"),
    )
    for service in services.values():
        service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await start_all(services.values())
    ingest, scoring, handoff = (services[s].url for s in ("ingest", "scoring", "handoff"))
    events = [
        {
            "id": f"{who}-{kind}",
            "identity": {"email": f"{who}@x.example"},
            "attributes": {"company_size": size} if size else {},
            "activity": {"type": kind, "occurred_at": minutes_ago(5)},
        }
        for who, size, kinds in (
            ("unknown", None, ["demo_request", "pricing_page_view"]),
            ("fitting", 300, ["demo_request", "form_submit"]),
        )
        for kind in kinds
    ]
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{ingest}/v1/events", json=events)).status_code == 202

        async def a_handoff():
            rows = (await client.get(f"{handoff}/v1/handoffs")).json()
            return rows or None

        await eventually(a_handoff, 30, "the fitting lead's handoff")

        async def scored(key: str):
            lead = (await client.get(f"{scoring}/v1/leads/{key}")).json()
            return lead if lead.get("events_count") == 2 else None

        unknown = await eventually(lambda: scored("email:unknown@x.example"), 30, "unknown")
        fitting = await eventually(lambda: scored("email:fitting@x.example"), 30, "fitting")
        rows = (await client.get(f"{handoff}/v1/handoffs")).json()
    assert (unknown["score"], unknown["stage"]) == (50, "lead")
    assert fitting["stage"] == "mql"
    assert [h["lead_key"] for h in rows] == ["email:fitting@x.example"]


async def test_a_returning_lead_and_its_account_go_to_the_rep_who_had_them(
    settings, services, tmp_path
):
    """Item 6: back after a recycle, or a colleague from the same account: the same rep,
    unless that rep is out; the routing reason says so."""
    path = example_playbook(
        tmp_path,
        ("existing_owner: { days: null }", "existing_owner: { days: 30 }"),
    )
    service = services["handoff"]
    service.env["LEADROUTER_PLAYBOOK"] = str(path)
    await service.start()
    async with httpx.AsyncClient() as client:

        async def routed(email: str, n: int = 1) -> dict:
            async def nth():
                rows = (await client.get(f"{service.url}/v1/handoffs")).json()
                mine = sorted(
                    (h for h in rows if h["lead_key"] == f"email:{email}"),
                    key=lambda h: h["created_at"],
                )
                return mine[n - 1] if len(mine) >= n else None

            return await eventually(nth, 30, f"handoff {n} of {email}")

        await publish(settings, LEAD_LIFECYCLE, [became_mql("ana@acme.example")])
        first = await routed("ana@acme.example")
        owner = first["rep_id"]
        rejected = await client.post(
            f"{service.url}/v1/handoffs/{first['handoff_id']}/reject",
            json={"reason": "no_budget", "rep_id": owner},
        )
        assert rejected.status_code == 200, rejected.text
        await publish(settings, LEAD_LIFECYCLE, [became_mql("ana@acme.example")])
        again = await routed("ana@acme.example", 2)
        assert again["rep_id"] == owner and again["routing_rule"] == "existing owner"
        assert "had this lead before" in again["routing_reason"]
        # A colleague: fair rotation would pick someone with fewer leads; the owner gets her.
        await publish(settings, LEAD_LIFECYCLE, [became_mql("bo@acme.example")])
        colleague = await routed("bo@acme.example")
        assert colleague["rep_id"] == owner
        assert "has the account acme.example" in colleague["routing_reason"]
        away = await client.put(
            f"{service.url}/v1/reps/{owner}/availability", json={"available": False}
        )
        assert away.status_code == 200, away.text
        await publish(settings, LEAD_LIFECYCLE, [became_mql("cy@acme.example")])
        third = await routed("cy@acme.example")
        assert third["rep_id"] not in {owner, None}
        assert third["routing_rule"] != "existing owner"
