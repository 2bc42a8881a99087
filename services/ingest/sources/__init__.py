"""Webhook sources: one module per platform, each exporting the same few names.

A source module exports `NAME` (the path segment), `SECRET_SETTING` (the IngestSettings field of
its secret), `SIGNATURE` (the headers it checks, for the docs), `EXAMPLE` (a payload as the
platform documents it), `verify(secret, request)` and `normalise(payload, settings)`.
`registry()` finds every module of this package, so adding a platform is adding a file.
Normalisers are pure: no I/O and no clock.
"""

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from services.ingest.normalise import (
    Unusable,
    combine_touches,
    erasure_request,
    lead_event,
    make_touch,
    url_touch,
    utm_touch,
)
from shared.events import CloudEvent
from shared.settings import IngestSettings

__all__ = [
    "Ignored",
    "Normalised",
    "SignedRequest",
    "Source",
    "Unusable",
    "collect",
    "combine_touches",
    "epoch_ms_time",
    "erasure_request",
    "lead_event",
    "make_touch",
    "page_view_activity",
    "parse_time",
    "registry",
    "snake_case",
    "url_touch",
    "utm_touch",
]


class Ignored(Exception):
    """An item the platform sent that carries nothing to score (acknowledged, counted)."""


@dataclass(frozen=True)
class SignedRequest:
    """What a signature check may look at: the request as the platform sent it."""

    method: str
    url: str  # the full URL the platform called (LEADROUTER_PUBLIC_BASE_URL applied)
    headers: Mapping[str, str]
    body: bytes
    now_ms: int
    max_age_s: int


@dataclass
class Normalised:
    """What a payload became: events to publish, items ignored, items for the DLQ.

    `kind` is the platform's own event kind (bounded: unknown kinds are reported as "other").
    """

    events: list[tuple[str, CloudEvent]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unusable: list[tuple[str, Any, str]] = field(default_factory=list)

    @property
    def items(self) -> int:
        """How many items the payload held, whatever became of them."""
        return len(self.events) + len(self.ignored) + len(self.unusable)


class Source(Protocol):
    """The names every module in this package exports."""

    NAME: str
    SECRET_SETTING: str
    SIGNATURE: str
    EXAMPLE: Any

    def verify(self, secret: str, request: SignedRequest) -> None:
        """Raise auth.Unauthorized unless the request proves it comes from the platform."""

    def normalise(self, payload: Any, settings: IngestSettings) -> Normalised:
        """The payload's items as lead events; raise Unusable if it is not the platform's shape."""


@cache
def registry() -> dict[str, Source]:
    """Every source module of this package, by name."""
    sources: dict[str, Source] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        sources[module.NAME] = cast(Source, module)
    return dict(sorted(sources.items()))


def collect(
    items: Iterable[tuple[str, Any]], to_event: Callable[[str, Any], CloudEvent]
) -> Normalised:
    """The one per-item loop: each (kind, item) becomes an event, is ignored, or is unusable."""
    out = Normalised()
    for kind, item in items:
        try:
            out.events.append((kind, to_event(kind, item)))
        except Ignored:
            out.ignored.append(kind)
        except Unusable as exc:
            out.unusable.append((kind, item, str(exc)))
    return out


def page_view_activity(properties: Mapping[str, Any]) -> str:
    """One rule for every platform: a page view of a pricing page is `pricing_page_view`."""
    path = properties.get("path") or ""
    if not path and isinstance(properties.get("url"), str):
        path = urlsplit(properties["url"]).path
    return "pricing_page_view" if "/pricing" in str(path) else "page_view"


def snake_case(name: str) -> str:
    """'Demo Requested' -> 'demo_requested': platform event names as activity types."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        raise Unusable(f"event name {name!r} does not make an activity type")
    return cleaned


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time string; naive times are taken as UTC (numbers are refused)."""
    if not isinstance(value, str) or not value:
        raise Unusable("the event has no time (an ISO 8601 string)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unusable(f"unreadable time {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms_time(value: Any) -> datetime:
    """Epoch milliseconds (an integer), as HubSpot sends `occurredAt`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unusable(f"occurredAt {value!r} is not epoch milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unusable(f"occurredAt {value!r} is out of range") from exc
