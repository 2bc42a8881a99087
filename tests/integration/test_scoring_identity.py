"""Identity resolution and sales outcomes through the scoring handler on the real PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from harness.events import lead_activity, sales_outcome
from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.service import RETIER
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker
from shared.db import outbox as outbox_table
from shared.events import CloudEvent
from shared.playbook import load_playbook
from shared.timers import pending
from tests.helpers import eventually

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def activity(subject, kind, minutes, email=None, ids=None, attributes=None):
    return lead_activity(
        subject,
        kind,
        T0 + timedelta(minutes=minutes),
        email,
        external_ids=ids,
        attributes=attributes,
        event_id=f"{subject}-{kind}-{minutes}",
    )


def outcome(lead_key, status, minutes, converted_to=None):
    return sales_outcome(
        lead_key, status, T0 + timedelta(minutes=minutes), converted_to=converted_to
    )


ANON = {"segment_anonymous": "anon-1"}
STORY = [
    activity("segment_anonymous:anon-1", "pricing_page_view", 0, ids=ANON),
    activity("segment_anonymous:anon-1", "page_view", 1, ids=ANON),
    activity("hubspot:7", "email_click", 2, ids={"hubspot": "7"}, attributes={"company_size": 300}),
    # The identify names the email and both platform ids: three records of one person.
    activity(
        "email:ana@acme.example",
        "form_submit",
        3,
        email="ana@acme.example",
        ids={**ANON, "hubspot": "7"},
        attributes={"job_title": "Head of IT"},
    ),
]


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def run(settings, sessions, batches):
    handler = scoring_handler(settings, load_playbook(settings.playbook))
    for batch in batches:
        async with sessions() as session, session.begin():
            await handler(session, [Delivered(e, "t", 0, i) for i, e in enumerate(batch)])


async def snapshot(sessions):
    async with sessions() as s:
        leads = await repository.all_leads(s)
        aliases = await repository.aliases_of(s, [lead.lead_key for lead in leads])
        timers = await pending(s, [RETIER])
    return leads, aliases, timers


@pytest.mark.parametrize("split", ["one_batch", "event_by_event"])
async def test_an_identify_merges_three_records_of_one_person_once(settings, sessions, split):
    batches = [STORY] if split == "one_batch" else [[e] for e in STORY]
    await run(settings, sessions, batches)
    leads, aliases, timers = await snapshot(sessions)
    assert [lead.lead_key for lead in leads] == ["email:ana@acme.example"]
    ana = leads[0]
    assert ana.events_count == 4
    assert ana.attributes == {"company_size": 300, "job_title": "Head of IT"}
    assert ana.score.fit == 35  # large company + senior title, from two different records
    assert ana.score.total == 35 + 10 + 1 + 5 + 20  # every record's activity, once
    assert set(aliases) == {
        "email:ana@acme.example",
        "segment_anonymous:anon-1",
        "hubspot:7",
    }
    assert set(aliases.values()) == {"email:ana@acme.example"}
    assert [t.key for t in timers] == ["email:ana@acme.example"]  # the absorbed leads' are gone
    async with sessions() as s:
        assert (await repository.get_lead(s, "hubspot:7")).lead_key == ana.lead_key
        assert (await repository.find_by_email(s, " ANA@acme.example")).lead_key == ana.lead_key


async def test_the_merged_lead_is_the_same_however_the_stream_is_batched(settings, sessions):
    await run(settings, sessions, [STORY[:2], STORY[2:]])
    split_leads, split_aliases, _ = await snapshot(sessions)
    async with sessions() as s, s.begin():
        for table in (repository.leads, repository.lead_aliases):
            await s.execute(table.delete())
    await run(settings, sessions, [list(reversed(STORY[:3])), STORY[3:]])
    leads, aliases, _ = await snapshot(sessions)
    assert aliases == split_aliases
    assert [(x.lead_key, x.events_count, x.stage, x.attributes) for x in leads] == [
        (x.lead_key, x.events_count, x.stage, x.attributes) for x in split_leads
    ]
    assert leads[0].behaviour.recent == split_leads[0].behaviour.recent
    assert leads[0].score == split_leads[0].score


async def test_sales_outcomes_move_the_stage_and_publish_lifecycle(settings, sessions):
    ana = "email:ana@acme.example"
    await run(
        settings,
        sessions,
        [
            [
                activity(ana, "demo_request", 0, email="ana@acme.example"),
                activity(ana, "form_submit", 1, email="ana@acme.example"),
            ],
            [outcome(ana, "accepted", 5)],  # not an outcome scoring acts on
            [outcome("hubspot:99", "converted", 6, converted_to="customer")],  # unseen yet
            [outcome(ana, "recycled", 10)],
        ],
    )
    async with sessions() as s:
        stages = {lead.lead_key: lead.stage for lead in await repository.all_leads(s)}
        published = (await s.execute(select(outbox_table.c.key, outbox_table.c.value))).all()
    assert stages == {ana: "recycled", "hubspot:99": "customer"}
    types = [
        (key, CloudEvent.from_bytes(value).type.removeprefix("leadrouter.lifecycle."))
        for key, value in published
    ]
    assert types == [
        (ana, "became_lead"),
        (ana, "became_mql"),
        (ana, "tier_changed"),
        ("hubspot:99", "became_customer"),
        (ana, "recycled"),
    ]
    # The customer's activity joins the lead its outcome started, by the same key.
    await run(
        settings, sessions, [[activity("hubspot:99", "page_view", 20, ids={"hubspot": "99"})]]
    )
    async with sessions() as s:
        customer = await repository.get_lead(s, "hubspot:99")
    assert (customer.stage, customer.events_count) == ("customer", 1)


async def test_two_instances_creating_the_same_new_person_at_once_make_one_lead(settings, sessions):
    """Two scoring transactions (two instances, two partitions) meet the same new person."""
    handler = scoring_handler(settings, load_playbook(settings.playbook))
    by_email = activity(
        "email:ana@acme.example", "form_submit", 0, email="ana@acme.example", ids={"hubspot": "7"}
    )
    by_hubspot = activity("hubspot:7", "page_view", 1, ids={"hubspot": "7"})
    first, second = sessions(), sessions()
    try:
        await first.begin()
        await handler(first, [Delivered(by_email, "t", 0, 0)])
        await second.begin()
        racing = asyncio.create_task(handler(second, [Delivered(by_hubspot, "t", 1, 0)]))
        # The second instance must wait for the first's identity decision, not guess its own.
        await eventually(lambda: _waiting_on_a_lock(sessions), 10, "the second to wait")
        await first.commit()
        await racing
        await second.commit()
    finally:
        await first.close()
        await second.close()
    leads, aliases, _ = await snapshot(sessions)
    assert [(lead.lead_key, lead.events_count) for lead in leads] == [("email:ana@acme.example", 2)]
    assert aliases == {"email:ana@acme.example": leads[0].lead_key, "hubspot:7": leads[0].lead_key}


async def _waiting_on_a_lock(sessions) -> bool:
    async with sessions() as s:
        waiting = await s.scalar(
            text(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


@pytest.mark.parametrize("split", ["one_batch", "event_by_event"])
async def test_a_merge_is_published_so_downstream_counts_the_person_once(settings, sessions, split):
    batches = [STORY] if split == "one_batch" else [[e] for e in STORY]
    await run(settings, sessions, batches)
    async with sessions() as s:
        published = [
            CloudEvent.from_bytes(value)
            for (value,) in (await s.execute(select(outbox_table.c.value))).all()
        ]
    merged = [e for e in published if e.type == "leadrouter.lifecycle.merged"]
    assert len(merged) == 1
    assert merged[0].subject == "email:ana@acme.example"
    assert sorted(merged[0].data["merged_keys"]) == ["hubspot:7", "segment_anonymous:anon-1"]
    # Every lead the funnel saw start is now the one person.
    started = {e.subject for e in published if e.type == "leadrouter.lifecycle.became_lead"}
    assert started - {merged[0].subject} <= set(merged[0].data["merged_keys"])
