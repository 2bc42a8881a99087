"""Strict input types for every API: a boolean is `true` or `false`, a time is an ISO 8601
string. pydantic's lax mode reads `0` as false and `0.5` as a 1970 timestamp; a client that
sends either has a bug, which a 422 shows at once instead of a wrong answer."""

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, StrictBool

__all__ = ["Day", "Instant", "StrictBool"]

# A date, or a date and time with an optional zone (a zoneless time is UTC, as before).
ISO_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?)?$"
)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not ISO_DATE_TIME.match(value.strip()):
        raise ValueError("give an ISO 8601 date-time, e.g. 2026-11-23T09:30:00Z (not a number)")
    return value.strip()


def _iso_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not ISO_DATE.match(value.strip()):
        raise ValueError("give an ISO 8601 date, e.g. 2026-11-23 (not a number)")
    return value.strip()


Instant = Annotated[datetime, BeforeValidator(_iso_time)]
Day = Annotated[date, BeforeValidator(_iso_date)]
