"""Scoring keeps each lead's first, qualifying and last touch on the real PostgreSQL, and
every lifecycle event carries them."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from harness.events import lead_activity
from services.scoring import repository
from services.scoring.app import scoring_handler
from shared.consumer import Delivered
from shared.db import make_engine, make_sessionmaker
from shared.db import outbox as outbox_table
from shared.playbook import load_playbook

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ANA = "email:ana@acme.example"


def touched(subject, kind, minutes, campaign=None, email=None, ids=None):
    event = lead_activity(
        subject,
        kind,
        T0 + timedelta(minutes=minutes),
        email,
        external_ids=ids,
        event_id=f"{subject}-{kind}-{minutes}",
    )
    if campaign:
        event.data["touch"] = {"source": "google", "campaign": campaign}
    return event


STORY = [
    touched("hubspot:7", "pricing_page_view", 0, "spring-ad", ids={"hubspot": "7"}),
    touched(ANA, "page_view", 5, email="ana@acme.example", ids={"hubspot": "7"}),
    touched(ANA, "demo_request", 10, "retarget", email="ana@acme.example"),
    touched(ANA, "email_click", 20, "nurture", email="ana@acme.example"),
]


@pytest.fixture
async def sessions(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.mark.parametrize("split", ["one_batch", "event_by_event"])
async def test_a_lead_keeps_its_touches_through_a_merge_and_its_mql(settings, sessions, split):
    handler = scoring_handler(settings, load_playbook(settings.playbook))
    for batch in [STORY] if split == "one_batch" else [[e] for e in STORY]:
        async with sessions() as session, session.begin():
            await handler(session, [Delivered(e, "t", 0, i) for i, e in enumerate(batch)])
    async with sessions() as s:
        touches = await repository.get_touches(s, [ANA, "hubspot:7"])
        values = (await s.execute(select(outbox_table.c.value))).scalars().all()
    assert set(touches) == {ANA}  # the merged-away lead's touches moved to ana
    ana = touches[ANA]
    assert ana.first and ana.first["campaign"] == "spring-ad"
    assert ana.qualifying and ana.qualifying["campaign"] == "retarget"  # the demo qualified her
    assert ana.last and ana.last["campaign"] == "nurture"
    events = {json.loads(v)["type"]: json.loads(v)["data"] for v in values}
    mql = events["leadrouter.lifecycle.became_mql"]
    assert mql["touches"]["first"]["campaign"] == "spring-ad"
    assert mql["touches"]["qualifying"]["campaign"] == "retarget"
    assert events["leadrouter.lifecycle.became_lead"]["touches"]["first"]["campaign"] == (
        "spring-ad"
    )

    async with sessions() as session, session.begin():
        await handler.erase(session, [ANA], actor="test", cause="erase-1")
    async with sessions() as s:
        assert await repository.get_touches(s, [ANA]) == {}
