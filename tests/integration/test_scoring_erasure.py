"""Erasure through the scoring handler and `leadrouter forget`, on the real PostgreSQL."""

import asyncio
import json
import os
import sys

import pytest
from sqlalchemy import select

from harness.events import lead_activity
from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.service import RETIER
from shared.audit import audit_log
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker
from shared.db import outbox as outbox_table
from shared.events import ERASURE_REQUESTED, LIFECYCLE_ERASED, CloudEvent
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT
from shared.timers import pending
from tests.integration.test_scoring_identity import T0, activity, outcome

pytestmark = pytest.mark.integration


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def apply(settings, sessions, events):
    handler = scoring_handler(settings, load_playbook(settings.playbook))
    async with sessions() as session, session.begin():
        await handler(session, [Delivered(e, "t", 0, i) for i, e in enumerate(events)])


def erasure_request(email: str) -> CloudEvent:
    return lead_activity(
        f"email:{email}",
        "erasure_requested",
        T0,
        email,
        event_id=f"erase-{email}",
        event_type=ERASURE_REQUESTED,
        source="leadrouter/ingest/segment",
    )


async def test_an_erasure_request_splits_its_batch_and_outcomes_do_not_revive_the_lead(
    settings, sessions
):
    key = "email:ana@acme.example"
    await apply(
        settings,
        sessions,
        [
            activity(key, "pricing_page_view", 0, email="ana@acme.example", ids={"crm": "c-1"}),
            activity(key, "demo_request", 1, email="ana@acme.example"),
            erasure_request("ana@acme.example"),
            # In flight for the erased lead: a sales outcome carries no identity.
            outcome(key, "recycled", 5),
        ],
    )
    async with sessions() as session:
        assert await repository.get_lead(session, key) is None
        assert await repository.get_lead(session, "crm:c-1") is None
        assert await pending(session, [RETIER]) == []
        rows = (await session.execute(select(outbox_table))).all()
        trail = (await session.execute(select(audit_log))).all()
    # Lifecycle rows of the lead (with its email) not yet relayed went; only `erased` remains.
    assert [json.loads(r.value)["type"] for r in rows] == [LIFECYCLE_ERASED]
    erased = json.loads(rows[0].value)["data"]
    assert erased["lead_key"] == key and erased["stage"] == "erased"
    assert not erased["email"] and not erased["attributes"] and not erased["explanation"]
    assert [(t.actor, t.action, t.target) for t in trail] == [
        ("kafka:leadrouter/ingest/segment", "lead.erase", "erase-ana@acme.example")
    ]
    # Later, the person sends an event with an email again: a new lead from nothing.
    await apply(settings, sessions, [activity(key, "email_open", 10, email="ana@acme.example")])
    async with sessions() as session:
        lead = await repository.get_lead(session, key)
    assert lead is not None and lead.events_count == 1


async def run_cli(settings, *args):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env={**os.environ, "LEADROUTER_DATABASE_URL": settings.database_url},
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_leadrouter_forget_erases_by_email_and_says_when_nobody_matches(settings, sessions):
    await apply(
        settings,
        sessions,
        [activity("email:bob@acme.example", "demo_request", 0, email="bob@acme.example")],
    )
    code, out, _ = await run_cli(settings, "forget", "Bob@Acme.example")
    assert code == 0, out
    assert "erased 1 lead" in out
    async with sessions() as session:
        assert await repository.get_lead(session, "email:bob@acme.example") is None
        (entry,) = (await session.execute(select(audit_log))).all()
    assert entry.actor.startswith("cli:") and entry.action == "lead.erase"
    code, _, err = await run_cli(settings, "forget", "bob@acme.example")
    assert code == 1 and "no lead" in err
