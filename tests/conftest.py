"""Fixtures: settings pointing at the real Kafka and PostgreSQL that `make infra-up` starts.

Isolation follows procrastinate: one database migrated once as a template, and a fresh
copy of it per test; Kafka isolation comes from a unique topic namespace per test.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.migrate import upgrade_async
from shared.settings import Settings

BASE_URL = os.environ.get(
    "LEADROUTER_TEST_DATABASE_URL",
    "postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:5432/leadrouter",
)
KAFKA = os.environ.get("LEADROUTER_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TEMPLATE = f"leadrouter_test_template_{os.getpid()}"

# Reports which event types the run validated against the AsyncAPI contract.
pytest_plugins = ["tests.contract"]


def _dsn(database: str) -> str:
    return (
        make_url(BASE_URL)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


def _sqlalchemy_url(database: str) -> str:
    return make_url(BASE_URL).set(database=database).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(make_url(BASE_URL).database or "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    """A database migrated to head once per test run, copied for each test."""
    await _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    await _admin(f'CREATE DATABASE "{TEMPLATE}"')
    await upgrade_async(_sqlalchemy_url(TEMPLATE))
    yield TEMPLATE
    await _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    """The SQLAlchemy URL of a fresh, migrated database for this test alone."""
    name = f"leadrouter_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _sqlalchemy_url(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str) -> Iterator[Settings]:
    """Settings for this test: its own database and its own topic namespace."""
    yield Settings(
        kafka_bootstrap=KAFKA,
        database_url=database_url,
        topic_namespace=f"test{uuid.uuid4().hex[:10]}",
        topic_partitions=3,
        consumer_poll_timeout_ms=100,
        outbox_idle_poll_s=0.1,
    )
