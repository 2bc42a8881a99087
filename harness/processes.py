"""Run the real services as separate processes, each with its own port and log file.

Shared by the end-to-end tests, `make bench` and `make chaos`; the services never import it.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings

# Set (by `python -m bench --profile`), every process started here runs under py-spy, which
# writes its sampled stacks (py-spy's raw "collapsed" format) into this folder when it exits.
# py-spy cannot attach to a running process in every sandbox, so it starts the process itself.
PROFILE_DIR = "LEADROUTER_PROFILE_DIR"


def profiled(argv: list[str], name: str) -> list[str]:
    """`argv` run under py-spy when profiling is on (see PROFILE_DIR), else `argv` itself."""
    folder = os.environ.get(PROFILE_DIR)
    if not folder:
        return argv
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"{name}.txt"
    spy = str(Path(sys.executable).with_name("py-spy"))
    options = ["--rate", "100", "--gil", "--nonblocking", "--full-filenames", "--format", "raw"]
    return [spy, "record", *options, "-o", str(out), "--", *argv]


def python_pid(process: "subprocess.Popen[bytes]", timeout_s: float = 10) -> int:
    """The pid of the Python process `process` runs: itself, or py-spy's child when profiled."""
    if not os.environ.get(PROFILE_DIR):
        return process.pid
    import psutil  # a bench dependency; profiling is a bench option

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children()
        if children:
            return int(children[0].pid)
        time.sleep(0.02)
    raise AssertionError(f"py-spy started no process in {timeout_s}s")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, never one this process handed out before (the
    kernel may offer a closed port again before the service it went to has bound it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
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
    """One leadrouter service process (`leadrouter <name> --port N`) configured by `settings`."""

    def __init__(self, name: str, settings: Settings, log_dir: Path, instance: str = "") -> None:
        self.name = name
        self.instance = instance or name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{self.instance}.log"
        self.env = {
            **os.environ,
            "LEADROUTER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LEADROUTER_DATABASE_URL": settings.database_url,
            "LEADROUTER_TOPIC_NAMESPACE": settings.topic_namespace,
            "LEADROUTER_CONSUMER_POLL_TIMEOUT_MS": "100",
            "LEADROUTER_OUTBOX_IDLE_POLL_S": "0.1",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The service's process id (not py-spy's when profiled), once started."""
        return self._pid

    async def start(self, timeout_s: float = 90) -> "Service":
        """Start the process and wait until its /readyz answers 200."""
        self.spawn()
        await self.wait_ready(timeout_s)
        return self

    def spawn(self) -> int:
        """Start the process without waiting; returns its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "services.cli", self.name, "--port", str(self.port)]
        self.process = subprocess.Popen(
            profiled(argv, f"{self.instance}-{self.port}"),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._pid = python_pid(self.process)
        return self._pid

    async def wait_ready(self, timeout_s: float = 90) -> None:
        """Wait until /readyz answers 200; fail with the log's tail if the process exits."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.ready():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{self.instance} not ready after {timeout_s}s (log: {self.log_path})"
                )
            await asyncio.sleep(0.2)

    async def ready(self) -> bool:
        """Whether /readyz answers 200 now (raises if the process has exited)."""
        if self.process and self.process.poll() is not None:
            raise AssertionError(f"{self.instance} exited: {self.log_path.read_text()[-3000:]}")
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.url}/readyz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the service itself (py-spy, when profiling, exits after it)."""
        if self._pid is not None and self.running:
            os.kill(self._pid, signum)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, as in a crash."""
        if self.process and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 20 s."""
        if self.process and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
