"""Migration 0007 keeps each lead's stored raw awards; `leadrouter scoring fold-legacy-hits`
folds them into the compact tallies with the same score."""

import asyncio
import io
import json
import uuid
from datetime import timedelta

import asyncpg
import pytest
from alembic import command

from services.scoring import repository
from services.scoring.app import scoring_handler
from services.scoring.core import Hit, LeadState, behaviour_score, evaluate
from services.scoring.legacy_hits import fold_legacy_hits
from shared.db import make_engine, make_sessionmaker
from shared.migrate import alembic_config, upgrade_async
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT, Settings
from tests.conftest import _admin, _dsn, _sqlalchemy_url
from tests.helpers import T0

pytestmark = pytest.mark.integration
PLAYBOOK_PATH = REPO_ROOT / "deploy" / "playbook.example.yaml"
PLAYBOOK = load_playbook(PLAYBOOK_PATH)
ANA = "email:ana@acme.example"
# 12 email opens (2 points, capped at 10 a month), a demo request, a page view.
HITS = [Hit("email_open", 2, T0 + timedelta(hours=i), f"o{i}") for i in range(12)] + [
    Hit("demo_request", 40, T0 + timedelta(days=2), "d"),
    Hit("page_view", 1, T0, "p"),
]
LAST = max(h.at for h in HITS)


def _doc(hits: list[Hit]) -> str:
    return json.dumps(
        [
            {"rule": h.rule, "points": h.points, "at": h.at.isoformat(), "event_id": h.event_id}
            for h in hits
        ]
    )


async def _insert_lead(conn: asyncpg.Connection, key: str, hits: list[Hit]) -> None:
    await conn.execute(
        "insert into leads (lead_key, email, attributes, score, fit_score, "
        "behaviour_score, stage, events_count, explanation, hits, last_activity_at, "
        "evaluated_at) values ($1, $2, '{}', 0, 0, 0, 'lead', 14, '[]', $3, $4, $4)",
        key,
        "ana@acme.example",
        _doc(hits),
        LAST,
    )


async def _database_at_0006(leads: dict[str, list[Hit]]) -> tuple[str, str]:
    name = f"leadrouter_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = _sqlalchemy_url(name)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0006")
    conn = await asyncpg.connect(_dsn(name))
    try:
        for key, hits in leads.items():
            await _insert_lead(conn, key, hits)
    finally:
        await conn.close()
    return name, url


async def _lead_and_waiting(url: str, key: str) -> tuple[LeadState | None, int]:
    engine = make_engine(url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            lead = await repository.get_lead(session, key)
            waiting = len(await repository.legacy_hits_batch(session, 1000))
    finally:
        await engine.dispose()
    return lead, waiting


def _settings(url: str) -> Settings:
    return Settings(database_url=url, playbook=str(PLAYBOOK_PATH))


async def test_the_command_folds_stored_awards_into_tallies_with_the_same_score() -> None:
    name, url = await _database_at_0006({ANA: HITS})
    try:
        await upgrade_async(url)
        lead, waiting = await _lead_and_waiting(url, ANA)
        assert lead is not None and lead.behaviour.tallies == {}  # the migration folds nothing
        assert waiting == 1

        assert await fold_legacy_hits(_settings(url), out=io.StringIO()) == 1

        lead, waiting = await _lead_and_waiting(url, ANA)
        assert lead is not None and waiting == 0
        at = LAST + timedelta(days=10)
        expected, _ = behaviour_score(HITS, PLAYBOOK, at)
        assert evaluate(lead, PLAYBOOK, at).behaviour == pytest.approx(round(expected, 2), abs=0.01)
        assert lead.behaviour.origins == frozenset({ANA})
        # Run again: nothing is left, nothing is counted twice.
        assert await fold_legacy_hits(_settings(url), out=io.StringIO()) == 0
        again, _ = await _lead_and_waiting(url, ANA)
        assert again is not None
        assert evaluate(again, PLAYBOOK, at).behaviour == evaluate(lead, PLAYBOOK, at).behaviour
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_awards_of_a_lead_merged_since_the_migration_reach_the_survivor() -> None:
    # Ana's awards were stored under two records; after the migration hubspot:1 was merged
    # into her lead and is now an alias of it.
    first, second = HITS[:7], HITS[7:]
    name, url = await _database_at_0006({ANA: first, "hubspot:1": second})
    try:
        await upgrade_async(url)
        conn = await asyncpg.connect(_dsn(name))
        try:
            await conn.execute("delete from leads where lead_key = 'hubspot:1'")
            await conn.execute(
                "insert into lead_aliases (alias, lead_key) values ('hubspot:1', $1)", ANA
            )
        finally:
            await conn.close()

        assert await fold_legacy_hits(_settings(url), out=io.StringIO()) == 2

        lead, waiting = await _lead_and_waiting(url, ANA)
        assert lead is not None and waiting == 0
        at = LAST + timedelta(days=10)
        expected, _ = behaviour_score(HITS, PLAYBOOK, at)
        assert evaluate(lead, PLAYBOOK, at).behaviour == pytest.approx(round(expected, 2), abs=0.01)
        assert lead.behaviour.origins == frozenset({ANA, "hubspot:1"})
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_erasing_a_lead_drops_its_awards_waiting_to_be_folded() -> None:
    name, url = await _database_at_0006({ANA: HITS[:7], "hubspot:1": HITS[7:]})
    try:
        await upgrade_async(url)
        conn = await asyncpg.connect(_dsn(name))
        try:
            await conn.execute("delete from leads where lead_key = 'hubspot:1'")
            await conn.execute(
                "insert into lead_aliases (alias, lead_key) values ('hubspot:1', $1)", ANA
            )
        finally:
            await conn.close()
        handler = scoring_handler(_settings(url), PLAYBOOK)
        engine = make_engine(url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                erased = await handler.erase(session, [ANA], actor="test", cause="erasure:t")
        finally:
            await engine.dispose()
        assert len(erased) == 1
        # Neither her own awards nor those under the key she absorbed are left to fold.
        assert await fold_legacy_hits(_settings(url), out=io.StringIO()) == 0
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
