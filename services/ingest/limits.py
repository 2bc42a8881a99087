"""The door's limits, pure: what ingest accepts with 202 can be stored and scored downstream.

Two checks, both for every endpoint:
- `parse_json` reads the body and `body_problems` walks it (iteratively, so no depth can
  crash it): nesting depth, NUL characters and lone surrogates (PostgreSQL text refuses them)
  and numbers that are not finite (JSON has no NaN or infinity; 1e400 overflows to one).
- `event_problems` looks at each lead event ingest would publish: string length, number of
  attributes and properties, the encoded size (so every record derived from it fits a Kafka
  request), and an occurrence time not beyond the clock-skew tolerance.
"""

import json
import math
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson

from shared.events import CloudEvent
from shared.settings import IngestSettings


@dataclass(frozen=True)
class Limits:
    """The documented per-field limits, each named as its setting (LEADROUTER_MAX_*,
    LEADROUTER_CLOCK_SKEW_S)."""

    max_json_depth: int = 32
    max_string_chars: int = 8192
    max_attributes: int = 100
    max_properties: int = 100
    max_event_bytes: int = 65536
    clock_skew_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> "Limits":
        """The limits a running ingest applies."""
        return cls(**{limit.name: getattr(settings, limit.name) for limit in fields(cls)})


@dataclass(frozen=True)
class Problem:
    """One broken limit: where (a JSON pointer), what, and whether it is about size (413)."""

    pointer: str
    detail: str
    too_large: bool = False


def _escape(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(*tokens: Any) -> str:
    """An RFC 6901 JSON pointer; the empty pointer (the whole document) is "/" here."""
    return "/" + "/".join(_escape(t) for t in tokens)


# A NUL can hide in an escape; orjson refuses a raw one.
_NUL = (b"\\u0000", b"\x00")
# orjson reads an integer beyond 64 bits as a float, json as the exact integer.
_INTEGER_BITS_64 = float(2**63)


def parse_json(raw: bytes, limits: Limits) -> tuple[Any, list[Problem]]:
    """The parsed body and the limits it breaks (`body_problems`).

    orjson reads it first (twice as fast as json): it refuses NaN, infinities (1e400 too) and
    lone surrogates, so a body it reads needs only the depth and NUL checks, without a pointer
    per value. Anything else (a body orjson refuses, UTF-16 and UTF-32, a BOM, a NUL escape,
    too deep, a number that may be an integer beyond 64 bits) is read by json and walked in
    full; json's ValueError, UnicodeDecodeError or RecursionError is the caller's to answer.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # json reads it below, and says what is wrong
    else:
        if not any(marker in raw for marker in _NUL) and _plain(body, limits.max_json_depth):
            return body, []
    body = json.loads(raw)
    return body, body_problems(body, limits)


def body_problems(body: Any, limits: Limits, max_problems: int = 10) -> list[Problem]:
    """Depth, NUL and non-finite numbers anywhere in a parsed JSON body."""
    problems: list[Problem] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), body)]
    while stack and len(problems) < max_problems:
        path, node = stack.pop()
        if isinstance(node, dict | list) and len(path) >= limits.max_json_depth:
            problems.append(
                Problem(pointer(*path), f"JSON nested deeper than {limits.max_json_depth} levels")
            )
            continue
        if isinstance(node, dict):
            for key, value in node.items():
                broken = _text_problem(key)
                if broken:
                    problems.append(Problem(pointer(*path, key), f"a key holds {broken}"))
                stack.append(((*path, key), value))
        elif isinstance(node, list):
            stack.extend(((*path, index), value) for index, value in enumerate(node))
        elif isinstance(node, str) and (broken := _text_problem(node)):
            problems.append(Problem(pointer(*path), f"{broken} is not accepted"))
        elif isinstance(node, float) and not math.isfinite(node):
            problems.append(Problem(pointer(*path), f"{node} is not a finite number"))
    return sorted(problems, key=lambda p: p.pointer)


def _plain(body: Any, max_depth: int) -> bool:
    """No object or array `max_depth` or more levels below the root, and no float that may be
    an integer orjson could not hold (NaN and infinities orjson refuses)."""
    if type(body) is float and not -_INTEGER_BITS_64 < body < _INTEGER_BITS_64:
        return False  # a bare number as the whole body
    level = [body] if type(body) is dict or type(body) is list else []
    depth = 0
    while level:
        if depth >= max_depth:
            return False
        below = []
        for node in level:
            for value in node.values() if type(node) is dict else node:
                kind = type(value)
                if kind is dict or kind is list:
                    below.append(value)
                elif kind is float and not -_INTEGER_BITS_64 < value < _INTEGER_BITS_64:
                    return False
        level = below
        depth += 1
    return True


def _text_problem(text: str) -> str | None:
    """What in a string PostgreSQL could not store: NUL, or a lone UTF-16 surrogate."""
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return None


def event_problems(
    event: CloudEvent, now: datetime, limits: Limits, encoded: bytes | None = None
) -> list[Problem]:
    """The limits one lead event breaks; pointers are into the event's `data`.

    `encoded`: the event as it will be published, when the caller has it already.
    """
    data = event.data
    problems: list[Problem] = []
    for name, limit in (
        ("attributes", limits.max_attributes),
        ("properties", limits.max_properties),
    ):
        holder = data.get(name) if name == "attributes" else data["activity"].get(name)
        where = ("attributes",) if name == "attributes" else ("activity", "properties")
        if isinstance(holder, dict) and len(holder) > limit:
            problems.append(
                Problem(pointer(*where), f"{len(holder)} {name}; at most {limit} are accepted")
            )
    size = len(encoded if encoded is not None else event.to_bytes())
    # Every character of a string or key takes at least one byte of the encoding, so an event
    # that encodes to no more bytes than a string may hold characters has no string too long.
    if size > limits.max_string_chars:
        problems += _long_strings(data, limits.max_string_chars)
    ahead_s = (event.time - now).total_seconds()
    if ahead_s > limits.clock_skew_s:
        problems.append(
            Problem(
                pointer("activity", "occurred_at"),
                f"{event.time.isoformat()} is {ahead_s:.0f} s in the future; events may be "
                f"at most {limits.clock_skew_s:.0f} s ahead of ingest's clock",
            )
        )
    if size > limits.max_event_bytes:
        problems.append(
            Problem(
                pointer(),
                f"the event encodes to {size} bytes; at most {limits.max_event_bytes} are accepted",
                too_large=True,
            )
        )
    return sorted(problems, key=lambda p: (not p.too_large, p.pointer))


def _long_strings(data: dict[str, Any], string_chars: int) -> list[Problem]:
    """Every string, and the first key of each object, longer than `string_chars`."""
    problems: list[Problem] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
            long_keys = [k for k in node if len(k) > string_chars]
            problems += [Problem(pointer(*path), "a key is too long") for _ in long_keys[:1]]
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
        elif isinstance(node, str) and len(node) > string_chars:
            problems.append(
                Problem(
                    pointer(*path),
                    f"{len(node)} characters; strings of at most {string_chars} are accepted",
                )
            )
    return problems
