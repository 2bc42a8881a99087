"""The scoring handler's copies of the leads it saved (services/scoring/known_leads.py) on the
real PostgreSQL: used only while the row is the one this handler wrote, so another instance,
a rolled-back batch or an erasure never makes it lose or double an event."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from harness.events import lead_activity, sales_outcome
from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.service import ScoringHandler
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker
from shared.db import outbox as outbox_table
from shared.events import ERASURE_REQUESTED
from shared.playbook import load_playbook

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ANA = "email:ana@acme.example"


def visit(minutes: int, kind: str = "page_view", subject: str = ANA) -> Delivered:
    email = subject.removeprefix("email:") if subject.startswith("email:") else None
    ids = None if email else dict([subject.split(":", 1)])
    event = lead_activity(
        subject,
        kind,
        T0 + timedelta(minutes=minutes),
        email,
        external_ids=ids,
        attributes={"company_size": 50 + minutes},
        event_id=f"{subject}-{kind}-{minutes}",
    )
    return Delivered(event, "t", 0, minutes)


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


def handler(settings, known_leads_max: int = 1000) -> ScoringHandler:
    made = scoring_handler(settings, load_playbook(settings.playbook))
    made.known.max_leads = known_leads_max
    return made


async def commit(sessions, scoring: ScoringHandler, *batch: Delivered) -> None:
    async with sessions() as session, session.begin():
        await scoring(session, list(batch))


async def ana(sessions):
    async with sessions() as session:
        return await repository.get_lead(session, ANA)


async def test_a_returning_lead_is_taken_from_memory_not_read_back(settings, sessions):
    scoring = handler(settings)
    await commit(sessions, scoring, visit(0))
    assert len(scoring.known) == 1
    version = scoring.known.versions([ANA])
    async with sessions() as session, session.begin():
        locked = await repository.lock_leads_unless_known(session, [ANA], version)
    assert locked == {ANA: (version[ANA], None)}  # locked, its JSON columns not sent
    await commit(sessions, scoring, visit(1))
    assert (await ana(sessions)).events_count == 2


async def test_two_instances_taking_turns_on_one_lead_lose_no_update(settings, sessions):
    first, second = handler(settings), handler(settings)
    await commit(sessions, first, visit(0))
    await commit(sessions, second, visit(1))  # a rebalance moved the partition, or a merge
    await commit(sessions, first, visit(2))  # its copy is one event behind the row
    lead = await ana(sessions)
    assert lead.events_count == 3
    assert lead.attributes == {"company_size": 52}
    assert lead.score == (await reference(settings, sessions, [visit(0), visit(1), visit(2)])).score


async def test_a_batch_that_rolled_back_leaves_no_trace(settings, sessions):
    scoring = handler(settings)
    await commit(sessions, scoring, visit(0))
    async with sessions() as session:
        await session.begin()
        await scoring(session, [visit(1, "demo_request")])
        await session.rollback()  # the offset did not move: the batch comes again
    await commit(sessions, scoring, visit(1, "demo_request"))
    lead = await ana(sessions)
    assert lead.events_count == 2
    expected = await reference(settings, sessions, [visit(0)], [visit(1, "demo_request")])
    assert lead.score == expected.score


async def test_a_lead_erased_elsewhere_starts_afresh(settings, sessions):
    scoring, other = handler(settings), handler(settings)
    await commit(sessions, scoring, visit(0), visit(1))
    erasure = lead_activity(
        ANA, "erasure_requested", T0, "ana@acme.example", event_type=ERASURE_REQUESTED
    )
    await commit(sessions, other, Delivered(erasure, "t", 0, 10))
    await commit(sessions, scoring, visit(2))
    lead = await ana(sessions)
    assert lead.events_count == 1


async def test_memory_or_not_the_projection_and_lifecycle_are_the_same(settings, sessions):
    """Returning leads across batches, merges and a sales outcome: byte for byte the same rows
    and outbox events with and without the copies."""
    bob, hub = "email:bob@acme.example", "hubspot:7"
    stream = [
        [visit(0), visit(1, "pricing_page_view", bob), visit(2, "email_click", hub)],
        [visit(3, "demo_request"), visit(4, "page_view", bob)],
        [
            Delivered(sales_outcome(ANA, "recycled", T0 + timedelta(minutes=5)), "t", 0, 5),
            visit(6, "webinar_attended", hub),
        ],
        [visit(7, "form_submit"), visit(8, "email_open", bob)],
        [visit(9, "demo_request"), visit(10, "pricing_page_view", hub)],
    ]
    projections = []
    for known_leads_max in (1000, 0):
        async with sessions() as session, session.begin():
            for table in (repository.leads, repository.lead_aliases, outbox_table):
                await session.execute(table.delete())
        scoring = handler(settings, known_leads_max)
        for batch in stream:
            await commit(sessions, scoring, *batch)
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(*(repository.leads.c[c] for c in repository.LEAD_COLUMNS)).order_by(
                        repository.leads.c.lead_key
                    )
                )
            ).all()
            events = (
                await session.execute(
                    select(outbox_table.c.key, outbox_table.c.value).order_by(outbox_table.c.id)
                )
            ).all()
        projections.append((rows, events))
    assert len(projections[0][1]) > 5
    assert projections[0] == projections[1]


async def reference(settings, sessions, *batches: list[Delivered]):
    """The lead these batches make with nothing kept in memory, from empty tables."""
    async with sessions() as session, session.begin():
        await session.execute(repository.leads.delete())
        await session.execute(repository.lead_aliases.delete())
    scoring = handler(settings, known_leads_max=0)
    for batch in batches:
        await commit(sessions, scoring, *batch)
    return await ana(sessions)
