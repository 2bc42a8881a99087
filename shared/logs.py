"""Logging: JSON lines for machines, readable lines on a terminal; one setup for every command."""

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

# Context a log call may carry with `extra={...}`; anything else stays out of the line.
CONTEXT_FIELDS = ("event_id", "lead_id", "handoff_id", "topic", "partition")


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message and known context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str = "INFO", json_lines: bool | None = None) -> None:
    """Send every logger to stderr: JSON lines unless stderr is a terminal (or told otherwise)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLines(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty at INFO and nothing an operator acts on; warnings still come through.
    for name in ("aiokafka", "alembic", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # aiokafka logs every reconnect attempt: during a broker outage that is thousands of lines.
    handler.addFilter(RepeatFilter(prefixes=("aiokafka",)))
    handler.addFilter(AdvisoryCommitLevel())


class AdvisoryCommitLevel(logging.Filter):
    """aiokafka's "OffsetCommit failed ... due to group error ..., will rejoin" at INFO, not ERROR.

    leadrouter's commits to Kafka are advisory (offsets live in PostgreSQL, shared.consumer),
    so one refused after a rebalance (as every one is right after Kafka comes back from an
    outage: the session expired) needs no operator: the consumer rejoins by itself.
    """

    LOGGER = "aiokafka.consumer.group_coordinator"

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == self.LOGGER
            and record.levelno == logging.ERROR
            and str(record.msg).startswith("OffsetCommit failed for group %s due to group")
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class RepeatFilter(logging.Filter):
    """Lets one line per message template through per window; the next one says how many were not.

    Applies to loggers under `prefixes` only (a library's retry chatter); leadrouter's own
    loops log state changes themselves (`Outage`) and are not filtered.
    """

    MAX_TEMPLATES = 1000

    def __init__(
        self,
        prefixes: tuple[str, ...],
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # [window start, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        # The template groups "cannot connect to node 1" and "... node 2"; a pre-formatted
        # message (no args) is grouped by its start.
        template = str(record.msg) if record.args else str(record.msg)[:60]
        key = (record.name, record.levelno, template)
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.window_s:
            entry[1] += 1
            return False
        if len(self._seen) >= self.MAX_TEMPLATES:
            self._seen.clear()
        self._seen[key] = [now, 0]
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [{int(entry[1])} similar line(s) in the last window]"
        return True


class Outage:
    """Logs a failing loop once when the failure starts, a summary every `summary_every_s`
    while it lasts, and once on recovery: never a traceback per retry."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        summary_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.what = what
        self.summary_every_s = summary_every_s
        self._clock = clock
        self.since: float | None = None
        self._last_line = 0.0
        self.failures = 0
        self.last_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        """Record one failed try; logs only when the failure starts or a summary is due."""
        now = self._clock()
        self.failures += 1
        self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
        if self.since is None:
            self.since = self._last_line = now
            self._log.warning("%s failing (%s); retrying with backoff", self.what, self.last_error)
        elif now - self._last_line >= self.summary_every_s:
            self._last_line = now
            self._log.warning(
                "%s still failing after %.0fs and %d tries (%s)",
                self.what,
                now - self.since,
                self.failures,
                self.last_error,
            )

    def recovered(self) -> None:
        """Record a success; logs once if it ends a failure."""
        if self.since is None:
            return
        self._log.info(
            "%s working again after %.0fs and %d failed tries",
            self.what,
            self._clock() - self.since,
            self.failures,
        )
        self.since, self.failures, self.last_error = None, 0, None

    def duration_s(self) -> float:
        """How long the current failure has lasted (0 when working)."""
        return 0.0 if self.since is None else self._clock() - self.since
