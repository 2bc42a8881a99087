"""Migration 0007 folds each lead's stored raw awards into the compact tallies."""

import asyncio
import json
import uuid
from datetime import timedelta

import asyncpg
import pytest
from alembic import command

from services.scoring import repository
from services.scoring.core import Hit, behaviour_score, evaluate
from shared.db import make_engine, make_sessionmaker
from shared.migrate import alembic_config, upgrade_async
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT
from tests.conftest import _admin, _dsn, _sqlalchemy_url
from tests.helpers import T0

pytestmark = pytest.mark.integration
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")


async def test_stored_awards_become_tallies_with_the_same_score() -> None:
    name = f"leadrouter_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = _sqlalchemy_url(name)
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0005")
        # 12 email opens (2 points, capped at 10 a month), a demo request, a page view.
        hits = [Hit("email_open", 2, T0 + timedelta(hours=i), f"o{i}") for i in range(12)]
        hits += [Hit("demo_request", 40, T0 + timedelta(days=2), "d"), Hit("page_view", 1, T0, "p")]
        last = max(h.at for h in hits)
        conn = await asyncpg.connect(_dsn(name))
        try:
            await conn.execute(
                "insert into leads (lead_key, email, attributes, score, fit_score, "
                "behaviour_score, stage, events_count, explanation, hits, last_activity_at, "
                "evaluated_at) values ($1, $2, '{}', 0, 0, 0, 'lead', 14, '[]', $3, $4, $4)",
                "email:ana@acme.example",
                "ana@acme.example",
                json.dumps(
                    [
                        {
                            "rule": h.rule,
                            "points": h.points,
                            "at": h.at.isoformat(),
                            "event_id": h.event_id,
                        }
                        for h in hits
                    ]
                ),
                last,
            )
        finally:
            await conn.close()
        await upgrade_async(url)
        engine = make_engine(url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session:
                lead = await repository.get_lead(session, "email:ana@acme.example")
        finally:
            await engine.dispose()
        assert lead is not None
        at = last + timedelta(days=10)
        expected, _ = behaviour_score(hits, PLAYBOOK, at)
        assert evaluate(lead, PLAYBOOK, at).behaviour == pytest.approx(round(expected, 2), abs=0.01)
        assert lead.behaviour.origins == frozenset({"email:ana@acme.example"})
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
