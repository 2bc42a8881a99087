"""The door's limits, pure: what ingest accepts with 202 can be stored and scored downstream.

Two checks, both for every endpoint:
- `body_problems` walks the parsed request body (iteratively, so no depth can crash it):
  nesting depth, NUL characters (PostgreSQL text refuses them) and numbers that are not
  finite (JSON has no NaN or infinity; 1e400 overflows to one).
- `event_problems` looks at each lead event ingest would publish: string length, number of
  attributes and properties, the encoded size (so every record derived from it fits a Kafka
  request), and an occurrence time not beyond the clock-skew tolerance.
"""

import json
import math
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from shared.events import CloudEvent
from shared.settings import Settings


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
    def from_settings(cls, settings: Settings) -> "Limits":
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


# In raw UTF-8 JSON, a NUL or a lone surrogate can only come from an escape (\u0000,
# \udxxx) or from raw surrogate bytes (0xED 0xA0-0xBF): a body with none of these markers
# holds no string `_text_problem` could refuse. A marker may be innocent (a Korean character
# also starts with 0xED); then every string is checked. Other encodings (json.loads also
# reads UTF-16 and UTF-32) always take the full walk.
TEXT_MARKERS = (b"\\u0000", b"\\ud", b"\\uD", b"\xed")


def body_problems(
    body: Any, limits: Limits, max_problems: int = 10, raw: bytes | None = None
) -> list[Problem]:
    """Depth, NUL and non-finite numbers anywhere in a parsed JSON body.

    `raw`: the body's bytes, when the caller has them: the common clean body is then checked
    without building a pointer per value (the pointers are built when a problem is found).
    """
    if (
        raw is not None
        and json.detect_encoding(raw) == "utf-8"
        and _clean(body, limits, check_text=any(m in raw for m in TEXT_MARKERS))
    ):
        return []
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


def _clean(body: Any, limits: Limits, check_text: bool) -> bool:
    """Whether `body_problems` would find nothing (the same walk, without pointers)."""
    stack: list[tuple[int, Any]] = [(0, body)]
    while stack:
        depth, node = stack.pop()
        if isinstance(node, dict):
            if depth >= limits.max_json_depth:
                return False
            if check_text and any(_text_problem(key) for key in node):
                return False
            stack.extend((depth + 1, value) for value in node.values())
        elif isinstance(node, list):
            if depth >= limits.max_json_depth:
                return False
            stack.extend((depth + 1, value) for value in node)
        elif isinstance(node, str):
            if check_text and _text_problem(node):
                return False
        elif isinstance(node, float) and not math.isfinite(node):
            return False
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
