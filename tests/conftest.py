"""Fixtures: settings pointing at the real Kafka and PostgreSQL that `make infra-up` starts.

Isolation follows procrastinate: one database migrated once as a template, and a fresh
copy of it per test; Kafka isolation comes from a unique topic namespace per test.
"""

import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url

from shared.migrate import upgrade_async
from shared.settings import REPO_ROOT, Settings
from tests.workers import worker_port

BASE_URL = os.environ.get(
    "LEADROUTER_TEST_DATABASE_URL",
    "postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:5432/leadrouter",
)
KAFKA = os.environ.get("LEADROUTER_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TEMPLATE = f"leadrouter_test_template_{os.getpid()}"

# Reports which event types the run validated against the AsyncAPI contract.
pytest_plugins = ["tests.contract"]

# No per-example deadline: property tests check results, and timings belong in benchmarks. On
# a loaded shared machine hypothesis's default 200 ms deadline failed examples that took long
# only because the CPU was busy (reported as flaky).
hypothesis_settings.register_profile("leadrouter", deadline=None)
hypothesis_settings.load_profile("leadrouter")


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
async def settings(database_url: str) -> AsyncIterator[Settings]:
    """Settings for this test: its own database and its own topic namespace.

    The namespace's topics are deleted afterwards: every partition holds open files in the
    broker, and a suite's worth of them would exhaust its file limit.
    """
    namespace = f"test{uuid.uuid4().hex[:10]}"
    yield Settings(
        kafka_bootstrap=KAFKA,
        database_url=database_url,
        topic_namespace=namespace,
        topic_partitions=3,
        consumer_poll_timeout_ms=100,
        outbox_idle_poll_s=0.1,
    )
    await _delete_topics(namespace + ".")


async def _delete_topics(prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=10000)
    try:
        await admin.start()
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    except KafkaError:
        pass  # a test that stopped the broker; its topics go with the broker's data
    finally:
        await admin.close()


# One port per xdist worker (tests/workers.py); the tests that pause it share one xdist group,
# so a run starts one such broker, on whichever worker takes the group.
PAUSABLE_PORT = worker_port(int(os.environ.get("LEADROUTER_TEST_PAUSABLE_KAFKA_PORT", "19192")))
PAUSABLE_STATE = REPO_ROOT / ".local" / f"kafka-pausable-{PAUSABLE_PORT}"


@pytest.fixture(scope="session")
def pausable_kafka() -> Iterator[tuple[str, int]]:
    """A private single-node Kafka a test may pause or stop: (bootstrap, pid).

    Port LEADROUTER_TEST_PAUSABLE_KAFKA_PORT (19192; + 10 per xdist worker), state in
    .local/kafka-pausable-<port>, the jars of .local/kafka/libs; started with the project's
    kafka.sh and stopped after the run. Tests that use it are marked
    `xdist_group("pausable_kafka")`.
    """
    libs = REPO_ROOT / ".local" / "kafka" / "libs"
    PAUSABLE_STATE.mkdir(parents=True, exist_ok=True)
    if libs.exists() and not (PAUSABLE_STATE / "libs").exists():
        (PAUSABLE_STATE / "libs").symlink_to(libs)
    env = {
        **os.environ,
        "LEADROUTER_KAFKA_PORT": str(PAUSABLE_PORT),
        "LEADROUTER_KAFKA_STATE": str(PAUSABLE_STATE),
    }
    script = str(REPO_ROOT / "deploy" / "infra" / "kafka.sh")
    up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=240)
    if up.returncode != 0:
        pytest.skip(f"could not start a private Kafka on port {PAUSABLE_PORT}: {up.stderr[-500:]}")
    pid = int((PAUSABLE_STATE / "kafka.pid").read_text())
    try:
        yield f"127.0.0.1:{PAUSABLE_PORT}", pid
    finally:
        os.kill(pid, signal.SIGCONT)
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
