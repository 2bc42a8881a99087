"""JSON for the database's JSONB columns and the hot paths: orjson, with the standard library
as the fallback for what orjson refuses (integers beyond 64 bits)."""

import json
from typing import Any

import orjson

loads = orjson.loads


def dumps(value: Any) -> str:
    """JSON text of `value` (tuples as arrays, datetimes as RFC 3339)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. an integer beyond 64 bits in a lead's attributes
        return json.dumps(value, default=str)
