"""A Kafka broker and a PostgreSQL server of the harness's own, which it may break.

Both are started by the project's scripts (deploy/infra/*.sh) on other ports and state
directories than the development ones, so a fault run never touches the shared instances.
"""

import asyncio
import fcntl
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.settings import REPO_ROOT

SCRIPTS = REPO_ROOT / "deploy" / "infra"


class InfraError(RuntimeError):
    """A script failed; the message carries its output."""


@dataclass
class OwnInfra:
    """Kafka on `kafka_port` and PostgreSQL on `postgres_port`, state under `state_dir`."""

    state_dir: Path
    kafka_port: int = 19092
    postgres_port: int = 15432
    _lock: IO[str] | None = field(default=None, repr=False)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://leadrouter:leadrouter@127.0.0.1:{self.postgres_port}/leadrouter"

    def database_url(self, database: str) -> str:
        return (
            f"postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:{self.postgres_port}/{database}"
        )

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LEADROUTER_KAFKA_PORT": str(self.kafka_port),
            "LEADROUTER_KAFKA_STATE": str(self.state_dir / "kafka"),
            "LEADROUTER_POSTGRES_PORT": str(self.postgres_port),
            "LEADROUTER_POSTGRES_STATE": str(self.state_dir / "postgres"),
        }

    async def _script(self, *args: str, **extra_env: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**self._env(), **extra_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode:
            raise InfraError(f"{' '.join(args)} failed ({proc.returncode}):\n{text}")
        return text

    async def up(self) -> None:
        """Start (or reuse) both; one harness run at a time holds the state directory."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = (self.state_dir / "run.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InfraError(
                f"another fault run uses {self.state_dir}; wait for it or pick another state dir"
            ) from exc
        await self.postgres_up()
        await self.kafka_up()

    async def down(self) -> None:
        """Stop both (a paused broker is resumed first so it can stop)."""
        self._signal_kafka(signal.SIGCONT)
        await self._script(str(SCRIPTS / "kafka.sh"), "down")
        await self._script(str(SCRIPTS / "postgres.sh"), "down")
        if self._lock:
            self._lock.close()
            self._lock = None

    async def kafka_up(self) -> None:
        await self._script(str(SCRIPTS / "kafka.sh"), "up")

    async def postgres_up(self) -> None:
        await self._script(str(SCRIPTS / "postgres.sh"), "up")

    def kafka_pid(self) -> int | None:
        pidfile = self.state_dir / "kafka" / "kafka.pid"
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def _signal_kafka(self, sig: signal.Signals) -> bool:
        pid = self.kafka_pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    async def kill_kafka(self, down_s: float) -> None:
        """SIGKILL the broker, leave it down `down_s` seconds, start it again."""
        pid = self.kafka_pid()
        if pid is None:
            raise InfraError("no broker of ours runs to kill")
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # it is not our child: wait until the kernel has reaped it
            if self.kafka_pid() is None:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(down_s)
        await self.kafka_up()

    async def pause_kafka(self, paused_s: float) -> None:
        """SIGSTOP the broker for `paused_s` seconds (connections stay open, nothing answers)."""
        if not self._signal_kafka(signal.SIGSTOP):
            raise InfraError("no broker of ours runs to pause")
        try:
            await asyncio.sleep(paused_s)
        finally:
            self._signal_kafka(signal.SIGCONT)

    async def restart_postgres(self, mode: str, down_s: float) -> None:
        """Stop PostgreSQL with pg_ctl's `mode` (fast or immediate), wait, start it again."""
        await self._script(str(SCRIPTS / "postgres.sh"), "down", LEADROUTER_POSTGRES_STOP_MODE=mode)
        await asyncio.sleep(down_s)
        await self.postgres_up()
