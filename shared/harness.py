"""Run leadrouter services as processes: shared by the end-to-end tests and `make bench`.

Each service gets its own port and log file and the settings given; `start()` returns once
its /readyz answers 200.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 60, what: str = ""
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}")
        await asyncio.sleep(0.2)


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

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.process.pid if self.process else None

    async def start(self, timeout_s: float = 90) -> "Service":
        """Start the process and wait until it is ready."""
        self.spawn()
        await self.wait_ready(timeout_s)
        return self

    def spawn(self) -> int:
        """Start the process without waiting; returns its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", self.name, "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self.process.pid

    async def wait_ready(self, timeout_s: float = 90) -> None:
        """Wait until /readyz answers 200."""
        await eventually(self._ready, timeout_s, f"{self.name} ready (log: {self.log_path})")

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
        """SIGTERM, then SIGKILL if it has not exited after 20 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
