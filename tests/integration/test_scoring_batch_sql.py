"""The scoring batch's set-based statements, sent straight to asyncpg on the session's own
connection: the projection they store is the one the pure fold (services/scoring/rebuild.py)
makes of the same events, merges and erasures included, and they commit or roll back with
the session's transaction."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from harness.events import lead_activity, sales_outcome
from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.core import LeadState, next_score_change, to_us
from services.scoring.rebuild import Rebuild, ReplayRecord
from services.scoring.service import RETIER
from shared import jsoncodec
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker
from shared.events import ERASURE_REQUESTED
from shared.playbook import load_playbook
from shared.timers import pending

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RECEIVED = T0 + timedelta(hours=1)


def activity(subject, kind, minutes, email=None, ids=None, attributes=None, type=None):
    return lead_activity(
        subject,
        kind,
        T0 + timedelta(minutes=minutes),
        email,
        external_ids=ids,
        attributes=attributes,
        event_id=f"{subject}-{kind}-{minutes}",
        **({"event_type": type} if type else {}),
    )


ANON = {"segment_anonymous": "anon-1"}
# One batch: leads made, a returning lead, three records of one person merged by an identify,
# a lead erased in the middle and met again after its erasure, a sales outcome.
FIRST = [
    activity("segment_anonymous:anon-1", "pricing_page_view", 0, ids=ANON),
    activity("email:bo@beta.example", "webinar_attended", 0, email="bo@beta.example"),
    activity("hubspot:7", "email_click", 1, ids={"hubspot": "7"}, attributes={"company_size": 300}),
    activity("segment_anonymous:anon-1", "page_view", 2, ids=ANON),
    activity("email:cy@gamma.example", "demo_request", 2, email="cy@gamma.example"),
    activity(
        "email:ana@acme.example",
        "form_submit",
        3,
        email="ana@acme.example",
        ids={**ANON, "hubspot": "7"},
        attributes={"job_title": "Head of IT"},
    ),
    activity("email:bo@beta.example", "page_view", 4, email="bo@beta.example"),
    activity(
        "email:bo@beta.example", "page_view", 5, email="bo@beta.example", type=ERASURE_REQUESTED
    ),
    activity("email:bo@beta.example", "pricing_page_view", 6, email="bo@beta.example"),
    sales_outcome("email:cy@gamma.example", "recycled", T0 + timedelta(minutes=7)),
]
# A second batch on the stored leads: returning leads (read back or known), and a stored lead
# merged into another stored one (its row deleted, its aliases repointed).
SECOND = [
    activity("email:ana@acme.example", "page_view", 10, email="ana@acme.example"),
    activity("hubspot:9", "email_open", 11, ids={"hubspot": "9"}),
    activity("email:cy@gamma.example", "page_view", 12, email="cy@gamma.example"),
    activity(
        "email:cy@gamma.example",
        "form_submit",
        13,
        email="cy@gamma.example",
        ids={"hubspot": "9"},
    ),
]


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


def fold(playbook, events):
    rebuild = Rebuild(playbook)
    for offset, event in enumerate(events):
        rebuild.apply(ReplayRecord("t", 0, offset, offset, to_us(RECEIVED), event, None))
    return rebuild


async def stored(sessions):
    async with sessions() as s:
        leads = {lead.lead_key: lead for lead in await repository.all_leads(s)}
        aliases = await repository.aliases_of(s, list(leads))
        timers = {t.key: t.due_at for t in await pending(s, [RETIER])}
    return leads, aliases, timers


def comparable(state: LeadState) -> tuple:
    """A lead column by column as the upsert writes it, JSON columns decoded (jsonb keeps
    its own key order)."""
    return tuple(
        jsoncodec.loads(value(state)) if kind == "jsonb" else value(state)
        for _, kind, value in repository.LEAD_ROW
    )


@pytest.mark.parametrize("known_leads", [True, False], ids=["known-leads", "fresh-handler"])
async def test_a_batch_with_a_merge_and_an_erasure_stores_what_the_pure_fold_makes(
    settings, sessions, known_leads
):
    playbook = load_playbook(settings.playbook)
    handler = scoring_handler(settings, playbook)
    for n, batch in enumerate((FIRST, SECOND)):
        if not known_leads:  # every stored lead read back from its row
            handler = scoring_handler(settings, playbook)
        async with sessions() as session, session.begin():
            await handler(
                session,
                [Delivered(e, "t", 0, 100 * n + i, RECEIVED) for i, e in enumerate(batch)],
            )
    leads, aliases, timers = await stored(sessions)
    rebuild = fold(playbook, FIRST + SECOND)

    assert {k: comparable(s) for k, s in leads.items()} == {
        k: comparable(s) for k, s in rebuild.leads.states.items()
    }
    assert aliases == rebuild.leads.bindings
    assert timers == {
        k: at for k, s in rebuild.leads.states.items() if (at := next_score_change(s, playbook))
    }
    # What the story is about, so the comparison above cannot pass on an empty projection.
    assert set(leads) == {
        "email:ana@acme.example",
        "email:bo@beta.example",
        "email:cy@gamma.example",
    }
    assert leads["email:ana@acme.example"].events_count == 5
    assert leads["email:bo@beta.example"].events_count == 1  # met again after its erasure
    assert aliases["hubspot:9"] == "email:cy@gamma.example"
    assert aliases["hubspot:7"] == "email:ana@acme.example"


async def test_the_statements_commit_and_roll_back_with_the_session_transaction(settings, sessions):
    playbook = load_playbook(settings.playbook)
    handler = scoring_handler(settings, playbook)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with sessions() as session, session.begin():
            # Statements through asyncpg directly first in the transaction (as the consumer's
            # claim of a batch's ids is), then the handler's, then one through the session.
            await repository.save_leads(session, [LeadState(lead_key="email:first@x.example")])
            await handler(session, [Delivered(e, "t", 0, i, RECEIVED) for i, e in enumerate(FIRST)])
            await session.execute(text("insert into erased_leads (lead_hash) values ('x')"))
            assert await session.scalar(select(func.count()).select_from(repository.leads)) == 4
            raise Abort
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(repository.leads)) == 0
        assert await session.scalar(text("select count(*) from lead_aliases")) == 0
        # The erasure in the batch stored a tombstone too: it rolled back with the rest.
        assert await session.scalar(text("select count(*) from erased_leads")) == 0
        assert await session.scalar(text("select count(*) from timers")) == 0


async def test_adding_a_column_to_the_upsert_is_one_entry_of_the_row():
    """The upsert is generated from LEAD_ROW: every column in it once, one array each."""
    sql = repository.SAVE_LEADS
    for i, (name, _, _) in enumerate(repository.LEAD_ROW, start=1):
        assert f"${i}::" in sql
        assert f"{name} = excluded.{name}" in sql or name == "lead_key"
    assert f"${len(repository.LEAD_ROW) + 1}" not in sql
