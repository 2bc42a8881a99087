"""Where `make bench` runs: its own databases and topic namespaces on the Kafka and PostgreSQL
named by LEADROUTER_KAFKA_PORT and LEADROUTER_POSTGRES_PORT (defaults 9092 and 5432, the ports
the infra scripts use), and how it samples the processes it starts."""

import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from shared.migrate import upgrade_async
from shared.settings import REPO_ROOT, Settings

KAFKA_PORT = int(os.environ.get("LEADROUTER_KAFKA_PORT", "9092"))
POSTGRES_PORT = int(os.environ.get("LEADROUTER_POSTGRES_PORT", "5432"))
ADMIN_DSN = f"postgresql://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/leadrouter"
REPORT_DIR = Path(os.environ.get("LEADROUTER_BENCH_REPORT", REPO_ROOT / ".local" / "bench-report"))
LOG_DIR = REPORT_DIR / "logs"

CREATED: list[str] = []


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dsn(name: str) -> str:
    return f"postgresql://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/{name}"


async def fresh_settings(**overrides: object) -> Settings:
    """A new migrated database and topic namespace, so runs never see each other's data."""
    name = f"leadrouter_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    CREATED.append(name)
    url = dsn(name).replace("postgresql://", "postgresql+asyncpg://")
    await upgrade_async(url)
    return Settings(
        database_url=url,
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        topic_namespace=f"bench{uuid.uuid4().hex[:8]}",
        **overrides,  # type: ignore[arg-type]
    )


def plain_dsn(settings: Settings) -> str:
    """The asyncpg DSN of a settings' database."""
    return settings.database_url.replace("postgresql+asyncpg://", "postgresql://")


async def drop_databases() -> None:
    """Drop every database this run created."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for name in CREATED:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class ProcessSample:
    """CPU seconds used and peak RSS of one process over a measurement."""

    name: str
    pid: int
    cpu_start: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    proc: psutil.Process | None = field(default=None, repr=False)

    def begin(self) -> None:
        self.proc = psutil.Process(self.pid)
        times = self.proc.cpu_times()
        self.cpu_start = times.user + times.system

    def sample(self) -> None:
        if self.proc is None:
            return
        try:
            rss = self.proc.memory_info().rss / 2**20
            times = self.proc.cpu_times()
        except psutil.NoSuchProcess:
            return
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.cpu_s = times.user + times.system - self.cpu_start


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    return {
        "cpu": f"{model}, {psutil.cpu_count()} logical cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "commit": commit,
        "kafka": f"127.0.0.1:{KAFKA_PORT}",
        "postgres": f"127.0.0.1:{POSTGRES_PORT}",
    }
