"""Run the real services as separate processes, configured for one test."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.helpers import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One leadrouter service process with its own port and log file."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "LEADROUTER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LEADROUTER_DATABASE_URL": settings.database_url,
            "LEADROUTER_TOPIC_NAMESPACE": settings.topic_namespace,
            "LEADROUTER_CONSUMER_POLL_TIMEOUT_MS": "100",
            "LEADROUTER_OUTBOX_IDLE_POLL_S": "0.1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> "Service":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [sys.executable, "-m", "services.cli", self.name, "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        await eventually(self._ready, 90, f"{self.name} ready (log: {self.log_path})")
        return self

    async def _ready(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.url}/readyz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Service]]:
    """The three services, not yet started; all are stopped after the test."""
    started = {name: Service(name, settings, tmp_path) for name in ("ingest", "scoring", "handoff")}
    yield started
    for service in started.values():
        service.stop()
