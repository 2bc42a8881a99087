"""Run the real services as separate processes, configured for one test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import Service
from shared.settings import Settings


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Service]]:
    """The three services, not yet started; all are stopped after the test."""
    started = {name: Service(name, settings, tmp_path) for name in ("ingest", "scoring", "handoff")}
    yield started
    for service in started.values():
        service.stop()
