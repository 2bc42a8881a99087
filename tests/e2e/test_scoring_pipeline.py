"""Scoring end to end: an event stream gives the expected leads, lifecycle, and replay agrees."""

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from harness.events import lead_activity, sales_outcome
from services.scoring.core import evaluate
from services.scoring.repository import all_leads, lead_aliases, lead_touches
from shared.db import consumer_offsets, make_engine, make_sessionmaker
from shared.events import CloudEvent
from shared.kafka import HANDOFFS, LEAD_EVENTS, LEAD_LIFECYCLE
from shared.playbook import load_playbook
from tests.conftest import _admin, _sqlalchemy_url
from tests.helpers import eventually, publish, read_topic

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def touched(event: CloudEvent, campaign: str) -> CloudEvent:
    """The activity with the marketing touch (utm parameters) it came with."""
    event.data["touch"] = {"source": "google", "medium": "cpc", "campaign": campaign}
    return event


STREAM = [
    # Ana asks for a demo and fills a form an hour ago: a warm MQL.
    touched(
        lead_activity(
            "email:ana@acme.example",
            "demo_request",
            NOW - timedelta(hours=1),
            "ana@acme.example",
            attributes={"company_size": 40},
        ),
        "webinar",
    ),
    lead_activity(
        "email:ana@acme.example", "form_submit", NOW - timedelta(minutes=59), "ana@acme.example"
    ),
    # An anonymous visitor looks at pricing twice, then identifies: one lead, history merged.
    lead_activity(
        "segment_anonymous:a-1",
        "pricing_page_view",
        NOW - timedelta(hours=2),
        external_ids={"segment_anonymous": "a-1"},
    ),
    lead_activity(
        "segment_anonymous:a-1",
        "pricing_page_view",
        NOW - timedelta(hours=2, minutes=-1),
        external_ids={"segment_anonymous": "a-1"},
    ),
    lead_activity(
        "email:bo@beta.example",
        "identify",
        NOW - timedelta(minutes=30),
        "bo@beta.example",
        external_ids={"segment_anonymous": "a-1"},
        attributes={"job_title": "VP Engineering"},
    ),
    # Olga qualified 60 days ago and went quiet: decay cools her without any new event.
    lead_activity(
        "email:olga@old.example", "demo_request", NOW - timedelta(days=60), "olga@old.example"
    ),
    lead_activity(
        "email:olga@old.example", "form_submit", NOW - timedelta(days=60), "olga@old.example"
    ),
    # Carl browses anonymously and, separately, requests a demo by email: two leads, until an
    # identify names both, and they merge into one with the whole history.
    touched(
        lead_activity(
            "segment_anonymous:a-2",
            "pricing_page_view",
            NOW - timedelta(hours=3),
            external_ids={"segment_anonymous": "a-2"},
        ),
        "spring-ad",
    ),
    touched(
        lead_activity(
            "email:carl@gamma.example",
            "demo_request",
            NOW - timedelta(hours=2),
            "carl@gamma.example",
        ),
        "retarget",
    ),
    lead_activity(
        "email:carl@gamma.example",
        "identify",
        NOW - timedelta(hours=1),
        "carl@gamma.example",
        external_ids={"segment_anonymous": "a-2"},
    ),
    # A competitor is disqualified however keen.
    lead_activity(
        "email:spy@rival.example", "demo_request", NOW - timedelta(minutes=5), "spy@rival.example"
    ),
]


# Sales answers: Ana is sent back to marketing, Carl is sales-qualified.
OUTCOMES = [
    sales_outcome(
        "email:ana@acme.example", "recycled", NOW - timedelta(minutes=30), reason="no_budget"
    ),
    sales_outcome(
        "email:carl@gamma.example", "converted", NOW - timedelta(minutes=20), converted_to="sql"
    ),
    sales_outcome("email:carl@gamma.example", "accepted", NOW - timedelta(minutes=25)),
]


def of_type(transition):
    """Match lifecycle records of one transition."""
    return lambda r: json.loads(r.value)["type"] == f"leadrouter.lifecycle.{transition}"


async def consumed(sessions, topic) -> int:
    async with sessions() as s:
        return await s.scalar(
            select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)).where(
                consumer_offsets.c.topic == topic
            )
        )


async def test_a_stream_gives_expected_leads_lifecycle_and_an_identical_replay(settings, services):
    await publish(settings, LEAD_EVENTS, STREAM)
    scoring = await services["scoring"].start()
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    topic = settings.topic(LEAD_EVENTS)
    try:
        await eventually(
            lambda: _eq(consumed(sessions, topic), len(STREAM)), 60, "the stream consumed"
        )
        lifecycle_topic = settings.topic(LEAD_LIFECYCLE)
        became = await read_topic(
            settings.kafka_bootstrap, lifecycle_topic, 3, match=of_type("became_mql")
        )
        assert sorted(r.key for r in became) == [
            b"email:ana@acme.example",
            b"email:carl@gamma.example",
            b"email:olga@old.example",
        ]
        ana_mql = next(json.loads(r.value) for r in became if r.key == b"email:ana@acme.example")
        assert ana_mql["data"]["tier"] == "warm"
        assert ana_mql["data"]["attributes"] == {"company_size": 40}
        assert (ana_mql["data"]["score"], ana_mql["data"]["stage"]) == (60, "mql")
        assert ana_mql["data"]["qualifying_activity_at"] == ana_mql["time"]

        await publish(settings, HANDOFFS, OUTCOMES)
        await eventually(
            lambda: _eq(consumed(sessions, settings.topic(HANDOFFS)), len(OUTCOMES)),
            60,
            "the sales outcomes consumed",
        )
        recycled = await read_topic(
            settings.kafka_bootstrap, lifecycle_topic, 1, match=of_type("recycled")
        )
        assert [r.key for r in recycled] == [b"email:ana@acme.example"]
        sql = await read_topic(
            settings.kafka_bootstrap, lifecycle_topic, 1, match=of_type("became_sql")
        )
        assert [r.key for r in sql] == [b"email:carl@gamma.example"]
        # Olga's decay timer was due long ago, so it fires at once and she cools below MQL.
        cooled = await read_topic(
            settings.kafka_bootstrap,
            lifecycle_topic,
            1,
            timeout_s=30,
            match=of_type("score_below_threshold"),
        )
        assert [r.key for r in cooled] == [b"email:olga@old.example"]
        async with httpx.AsyncClient() as client:
            lead = lambda key: client.get(f"{scoring.url}/v1/leads/{key}")  # noqa: E731
            ana = (await lead("email:ana@acme.example")).json()
            assert (ana["stage"], ana["tier"], ana["score"]) == ("recycled", "warm", 60)
            assert {c["rule"] for c in ana["explanation"]} == {
                "behaviour:demo_request",
                "behaviour:form_submit",
            }
            bo = (await lead("segment_anonymous:a-1")).json()  # found by the alias it had before
            assert bo["lead_id"] == "email:bo@beta.example"
            assert bo["events_count"] == 3
            assert bo["fit_score"] == 15  # VP title
            assert bo["score"] == 35  # 15 fit + 2 x 10 pricing views
            olga = (await lead("email:olga@old.example")).json()
            assert (olga["stage"], olga["tier"], olga["score"]) == ("mql", "cold", 15)  # 60 / 4
            carl = (await lead("segment_anonymous:a-2")).json()
            assert (carl["lead_id"], carl["events_count"], carl["score"], carl["stage"]) == (
                "email:carl@gamma.example",
                3,
                50,
                "sql",
            )
            spy = (await lead("email:spy@rival.example")).json()
            assert spy["stage"] == "disqualified"
            assert (await lead("email:nobody@x.example")).status_code == 404
        disqualified = await read_topic(
            settings.kafka_bootstrap, lifecycle_topic, 1, match=of_type("disqualified")
        )
        assert [r.key for r in disqualified] == [b"email:spy@rival.example"]

        async with sessions() as s:
            live = await all_leads(s)
            live_aliases = set((await s.execute(select(lead_aliases))).all())
            live_touches = await _touches(s)
    finally:
        await engine.dispose()

    # Replay from the start of the topics into an empty database, through the CLI.
    replay_db = f"leadrouter_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{replay_db}"')
    try:
        env = {**scoring.env, "LEADROUTER_DATABASE_URL": _sqlalchemy_url(replay_db)}
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", "scoring", "replay"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        records = len(STREAM) + len(OUTCOMES)
        assert f"[replay] done: {records} records, 5 leads" in result.stderr
        engine = make_engine(_sqlalchemy_url(replay_db), pool_size=1)
        try:
            async with make_sessionmaker(engine)() as s:
                replayed = await all_leads(s)
                replayed_aliases = set((await s.execute(select(lead_aliases))).all())
                replayed_touches = await _touches(s)
        finally:
            await engine.dispose()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{replay_db}" WITH (FORCE)')

    playbook = load_playbook(settings.playbook)
    at = NOW + timedelta(days=1)

    def summary(leads):
        return {
            lead.lead_key: (
                lead.events_count,
                lead.stage,
                lead.recycled_at,
                lead.email,
                lead.attributes,
                lead.behaviour.recent,
                sorted(lead.behaviour.tallies),
                evaluate(lead, playbook, at),
            )
            for lead in leads
        }

    assert summary(replayed) == summary(live)
    assert replayed_aliases == live_aliases
    # Carl's first touch came under his anonymous name, before the merge; his demo qualified him.
    carl_touches = {row.lead_key: row for row in live_touches}["email:carl@gamma.example"]
    assert carl_touches.first_touch["campaign"] == "spring-ad"
    assert carl_touches.qualifying_touch["campaign"] == "retarget"
    assert replayed_touches == live_touches


async def _touches(session) -> list:
    return list(
        (await session.execute(select(lead_touches).order_by(lead_touches.c.lead_key))).all()
    )


async def _eq(value, expected) -> bool:
    return (await value) == expected
