"""Issue 10 item 14: each service's OpenAPI document matches what it answers (schemathesis).

The three apps run in this process (uvicorn in a thread each, lifespan included) on their
own copy of the template database and their own topic namespace; schemathesis generates
requests from each app's /openapi.json with a fixed seed and a bounded number of examples,
and applies its default checks to every response.
"""

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.engine import make_url

from services.handoff.app import build_app as build_handoff
from services.ingest.app import build_app as build_ingest
from services.scoring.app import build_app as build_scoring
from shared.auth import ADMIN, key_file_line, new_key
from shared.settings import Settings
from tests.conftest import BASE_URL, KAFKA

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 30
SEED = 20261123


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InProcessServer:
    """An app served by uvicorn on a thread of this process (its lifespan runs there)."""

    def __init__(self, app: object) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "InProcessServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start; see the log above")
            time.sleep(0.05)
        # Checked once ready: a 503 from /readyz while the consumer joins is not a bug.
        while httpx.get(f"{self.url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}/readyz never answered 200")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _admin_dsn() -> str:
    return make_url(BASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)


# The services run with a key file: every request carries an admin key, and schemathesis's
# own authentication checks (a missing or wrong key must be refused) apply too.
ADMIN_KEY = new_key()


@pytest.fixture(scope="module")
def servers(
    template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, InProcessServer]]:
    name = f"leadrouter_test_{uuid.uuid4().hex[:12]}"
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(key_file_line("schemathesis", ADMIN_KEY, [ADMIN]) + "\n")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_admin_dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    config = Settings(
        kafka_bootstrap=KAFKA,
        database_url=make_url(BASE_URL).set(database=name).render_as_string(hide_password=False),
        topic_namespace=f"test{uuid.uuid4().hex[:10]}",
        consumer_poll_timeout_ms=100,
        outbox_idle_poll_s=0.1,
        # Generated traffic is not a platform over its rate: keep 429s out of the way.
        rate_limit_per_s=1e6,
        rate_limit_burst=1_000_000,
        api_keys_file=keys,
    )
    apps = {
        "ingest": build_ingest(config),
        "scoring": build_scoring(config),
        "handoff": build_handoff(config),
    }
    with (
        InProcessServer(apps["ingest"]) as ingest,
        InProcessServer(apps["scoring"]) as scoring,
        InProcessServer(apps["handoff"]) as handoff,
    ):
        yield {"ingest": ingest, "scoring": scoring, "handoff": handoff}
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# An event may be dated at most LEADROUTER_CLOCK_SKEW_S ahead (occurred_at's description
# says so; JSON Schema cannot): valid times are generated from the past.
schemathesis.openapi.format(
    "date-time",
    st.datetimes(datetime(1971, 1, 1), datetime(2026, 1, 1), timezones=st.just(UTC)).map(
        datetime.isoformat
    ),
)
# Emails are checked by email-validator (no special-use domains such as .local or .arpa),
# stricter than JSON Schema's "email" format: valid ones are generated in a plain shape.
schemathesis.openapi.format(
    "email",
    # a dot only between letters or digits: "a.@b.com" and "a..b@c.com" are not addresses
    st.from_regex(
        r"[a-z][a-z0-9]{0,7}(\.[a-z0-9]{1,7})?@[a-z]{2,12}\.(com|org|de|io)", fullmatch=True
    ),
)
# Rules between parameters OpenAPI cannot state, so a schema-valid request is rightly 422:
# GET /v1/leads needs `email` or `alias`; GET /v1/funnel and /v1/insights need `since` before
# `until`; a
# backtest's candidate must be a valid playbook, which a JSON string schema cannot say.
NOT_EXPRESSIBLE = {
    "GET /v1/leads": [positive_data_acceptance],
    "GET /v1/funnel": [positive_data_acceptance],
    "GET /v1/insights": [positive_data_acceptance],
    "POST /v1/playbook/backtests": [positive_data_acceptance],
}

BOUNDED = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _checked(cases, excluded):
    """A hypothesis test that sends each generated case and applies the default checks."""

    @BOUNDED
    @seed(SEED)
    @given(case=cases)
    def check(case):
        case.call_and_validate(
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, excluded_checks=excluded
        )

    return check


def schemathesis_failures(base_url: str) -> list[str]:
    """Run every operation of the app's OpenAPI document; each failure as a readable line."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # Every service refuses NUL characters (400/422, problem+json, tested on their own);
    # JSON Schema cannot say so, so valid data is generated without them.
    schema.config.generation.update(allow_x00=False)
    failures = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"the document does not load: {result.err()}")
            continue
        operation = result.ok()
        try:
            _checked(operation.as_strategy(), NOT_EXPRESSIBLE.get(operation.label))()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    return failures


@pytest.mark.parametrize("service", ["ingest", "scoring", "handoff"])
def test_each_service_answers_as_its_openapi_document_says(servers, service):
    failures = schemathesis_failures(servers[service].url)
    assert not failures, "\n\n".join(failures)
