"""Run the real services as separate processes, configured for one test."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import Service
from shared.settings import REPO_ROOT, Settings
from tests.contract import namespace_errors

RELEASED = REPO_ROOT / "contracts" / "asyncapi.v1.json"


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Service]]:
    """The three services, not yet started; all are stopped after the test."""
    started = {name: Service(name, settings, tmp_path) for name in ("ingest", "scoring", "handoff")}
    yield started
    for service in started.values():
        service.stop()


@pytest.fixture(autouse=True)
def released_contract_kept(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each end-to-end test, every record on every topic it wrote, read with a plain
    consumer, must match the RELEASED contract (contracts/asyncapi.v1.json): what subscribers
    validate against, not only the live document. Done per test, before its topics are deleted
    (a suite's worth of topics would exhaust the broker's open files).

    `@pytest.mark.poison`: the test writes records that break the contract on purpose; only
    its dead letters (which leadrouter writes) are checked.
    """
    if "settings" not in request.fixturenames:
        yield
        return
    settings: Settings = request.getfixturevalue("settings")
    yield
    released = json.loads(RELEASED.read_text())
    poison = request.node.get_closest_marker("poison") is not None
    # A fixture outside the tests' event loop (it asks for `settings` only if the test does).
    errors = asyncio.run(namespace_errors(settings, released, main_topics=not poison))
    if errors:
        pytest.fail(
            f"{len(errors)} record(s) break the released contract:\n" + "\n".join(errors[:20])
        )
