"""Logging: JSON lines for machines, readable lines on a terminal; one setup for every command."""

import json
import logging
import sys
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
