"""Ingest's flow, the one path every endpoint takes: check, authenticate, limit, normalise,
publish. Each step raises a LeadrouterError the app factory renders as problem+json."""

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from services.ingest import tracking
from services.ingest.limits import Limits, Problem, event_problems, parse_json
from services.ingest.metrics import (
    OUTCOMES,
    PUBLISH_SECONDS,
    events_total,
    request_seconds,
    requests_total,
)
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.ingest.publisher import PublishFailed, Record, RequestPublisher
from services.ingest.ratelimit import TokenBuckets
from services.ingest.schemas import IngestResult
from services.ingest.sources import Normalised, SignedRequest, Source, Unusable, registry, segment
from shared.errors import (
    BadRequest,
    Invalid,
    LeadrouterError,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from shared.events import CONTENT_TYPE
from shared.http import validation_errors
from shared.kafka import LEAD_EVENTS, dlq
from shared.runtime import Runtime
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

JSON_TYPES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}

# The same for every record: built once (aiokafka only reads it).
CLOUD_EVENT_HEADERS = [("content-type", CONTENT_TYPE.encode())]

_native = TypeAdapter(NativeLeadEvent)
# An array is validated in one call (pydantic's loop, not ours); error locations start with
# the item's index, as the pointers of an array's problems do.
_native_array = TypeAdapter(list[NativeLeadEvent])


@dataclass(frozen=True)
class Door:
    """How one endpoint authenticates and normalises; the rest of the flow is shared.

    `strict`: a broken per-event limit refuses the whole request (the native API, whose
    caller can fix and resend); for webhooks the item goes to the DLQ and the rest is taken.
    """

    label: str
    authenticate: Callable[[bytes], str]
    normalise: Callable[[str, Any], Normalised]
    strict: bool
    # The Tracking API's body: also text/plain (analytics.js avoids a CORS preflight with
    # it) and gzip (the server SDKs compress), within Segment's documented sizes.
    tracking: bool = False


class IngestService:
    """What the endpoints call; holds the secrets (read once), rate limits and publisher."""

    def __init__(self, settings: IngestSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.topic = settings.topic(LEAD_EVENTS)
        self.limits = Limits.from_settings(settings)
        self.buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.sources = registry()
        # Read once: secret files are not re-read on the request path.
        self.secrets = {
            name: settings.secret(source.SECRET_SETTING) for name, source in self.sources.items()
        }
        self.publisher = RequestPublisher(settings, lambda: runtime.producer)
        self.tracking_limits = tracking.TrackingLimits.from_settings(settings)

    async def native(self, request: Request, source: str) -> IngestResult:
        """POST /v1/events from `source` (the API key's name): one native event or an array."""

        def authenticate(raw: bytes) -> str:
            return source  # the key was checked with its scope before the body was read

        return await self._ingest(request, Door("api", authenticate, self._native, strict=True))

    async def webhook(self, request: Request, name: str) -> IngestResult:
        """POST /v1/webhooks/{name}: a platform's payload, verified by its own scheme."""
        source = self.sources[name]

        def authenticate(raw: bytes) -> str:
            self._verify(source, request, raw)
            return name

        def normalise(_: str, payload: Any) -> Normalised:
            return source.normalise(payload, self.settings)

        return await self._ingest(request, Door(name, authenticate, normalise, strict=False))

    async def tracking(self, request: Request, call: str) -> IngestResult:
        """The Segment-spec Tracking API: one call (identify, track, ...) or a batch."""

        def authenticate(raw: bytes) -> str:
            principal = tracking.write_key_principal(
                request.app.state.authenticator, request.headers.get("authorization"), raw
            )
            return "tracking" if principal.anonymous else principal.name

        def normalise(source: str, payload: Any) -> Normalised:
            return segment.normalise(
                tracking.messages(call, payload, self.tracking_limits), source=source
            )

        try:
            return await self._ingest(
                request, Door("tracking", authenticate, normalise, strict=False, tracking=True)
            )
        except TooLarge as exc:  # Segment answers 400 to a payload over its limits
            raise BadRequest(exc.detail, errors=exc.errors, title="Payload too large") from exc

    async def _ingest(self, request: Request, door: Door) -> IngestResult:
        started = time.perf_counter()
        source = door.label
        outcome = "accepted"
        try:
            raw = await self._read_body(request, door.tracking)
            if door.tracking:
                raw = tracking.decoded_body(raw, request.headers, self.tracking_limits)
            source = door.authenticate(raw)
            retry_s = self.buckets.take(source, time.monotonic())
            if retry_s:
                raise RateLimited(
                    f"{source} is over its rate limit",
                    headers={"Retry-After": str(max(1, round(retry_s + 0.5)))},
                )
            payload = self._parse(raw)
            try:
                result = door.normalise(source, payload)
            except Unusable as exc:
                raise Invalid(str(exc), pointer="/") from exc
            if not result.items:
                raise Invalid("the body holds no events", pointer="/")
            self._check_count(result.items)
            values = self._apply_event_limits(result, payload, door.strict, datetime.now(UTC))
            records = self._records(source, result, values)
            published = time.perf_counter()
            try:
                await self.publisher.publish(records)
            except PublishFailed as exc:
                log.warning("kafka did not acknowledge %d record(s): %s", len(records), exc)
                raise Unavailable(
                    "Kafka did not acknowledge the events in time; nothing of this request "
                    "was published: retry the same request",
                    headers={"Retry-After": "5"},
                    title="Kafka unavailable",
                ) from exc
            PUBLISH_SECONDS.observe(time.perf_counter() - published)
        except LeadrouterError as problem:
            outcome = OUTCOMES.get(problem.status, "error")
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            requests_total(source, outcome).inc()
            request_seconds(source).observe(time.perf_counter() - started)
        # Counted per kind, not per item: a batch is one label lookup, not a hundred.
        for kind, count in _per_kind(kind for kind, _ in result.events).items():
            events_total(source, kind, "accepted").inc(count)
        for kind, count in _per_kind(result.ignored).items():
            events_total(source, kind, "ignored").inc(count)
        for kind, _, reason in result.unusable:
            events_total(source, kind, "dead_lettered").inc()
            log.warning("%s: an item went to the DLQ: %s", source, reason)
        return IngestResult(
            accepted=len(result.events),
            ignored=len(result.ignored),
            dead_lettered=len(result.unusable),
            ids=[event.id for _, event in result.events],
        )

    async def _read_body(self, request: Request, text_too: bool = False) -> bytes:
        """The raw body, after the content-type and size checks (signatures need the bytes)."""
        max_bytes = self.settings.max_body_bytes
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES and not (
            text_too and content_type in tracking.CONTENT_TYPES
        ):
            raise UnsupportedMediaType(
                f"send JSON (Content-Type: application/json), not {content_type or 'nothing'!r}"
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(f"body is larger than {max_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_bytes:
                raise TooLarge(f"body is larger than {max_bytes} bytes")
        return bytes(raw)

    def _parse(self, raw: bytes) -> Any:
        """The JSON body, refused at once if it could not be stored or scored."""
        try:
            payload, problems = parse_json(raw, self.limits)
        except RecursionError as exc:
            raise Invalid(
                f"JSON nested deeper than {self.limits.max_json_depth} levels", pointer="/"
            ) from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from exc
        if problems:
            raise _invalid(problems)
        return payload

    def _verify(self, source: Source, request: Request, raw: bytes) -> None:
        secret = self.secrets[source.NAME]
        if not secret:
            raise Unauthorized(
                f"{source.NAME} webhooks are not configured: "
                f"set LEADROUTER_{source.SECRET_SETTING.upper()}"
            )
        url = request.url
        base = self.settings.public_base_url or f"{url.scheme}://{url.netloc}"
        source.verify(
            secret,
            SignedRequest(
                method=request.method,
                url=base.rstrip("/") + url.path + (f"?{url.query}" if url.query else ""),
                headers=request.headers,
                body=raw,
                now_ms=int(time.time() * 1000),
                max_age_s=self.settings.webhook_max_age_s,
            ),
        )

    def _native(self, source: str, payload: Any) -> Normalised:
        single = not isinstance(payload, list)
        count = 1 if single else len(payload)
        self._check_count(count)  # before validating, so a huge array costs little
        try:
            parsed = (
                [_native.validate_python(payload)]
                if single
                else _native_array.validate_python(payload)
            )
        except ValidationError as exc:
            errors = validation_errors(exc.errors())
            events_total(source, "native", "invalid").inc(count)
            raise Invalid(f"{errors[0]['pointer']}: {errors[0]['detail']}", errors=errors) from exc
        return Normalised(events=[("native", native_to_cloud_event(i, source)) for i in parsed])

    def _check_count(self, count: int) -> None:
        if count > self.settings.max_events_per_request:
            raise TooLarge(
                f"{count} events in one request; send at most "
                f"{self.settings.max_events_per_request}",
            )

    def _apply_event_limits(
        self, result: Normalised, payload: Any, strict: bool, now: datetime
    ) -> list[bytes]:
        """Refuse (strict) or dead-letter each event that breaks a limit; 413 for size.

        Returns the kept events encoded as they are published (each is encoded once).
        """
        kept = []
        values = []
        refusals: list[Problem] = []
        for index, (kind, event) in enumerate(result.events):
            value = event.to_bytes()
            problems = event_problems(event, now, self.limits, value)
            if not problems:
                kept.append((kind, event))
                values.append(value)
                continue
            # Native events are the caller's items, so the pointer names the item's field;
            # a webhook's events are derived, so the pointer is into the lead event.
            prefix = f"/{index}" if strict and isinstance(payload, list) else ""
            located = [
                Problem(prefix + p.pointer.rstrip("/") or "/", p.detail, p.too_large)
                for p in problems
            ]
            if strict or any(p.too_large for p in located):
                refusals += located
            else:
                reason = "; ".join(f"{p.pointer}: {p.detail}" for p in located)
                result.unusable.append((kind, event.data, reason))
        result.events = kept
        if any(p.too_large for p in refusals):
            large = [p for p in refusals if p.too_large]
            raise TooLarge(
                f"{large[0].pointer}: {large[0].detail}",
                errors=[{"pointer": p.pointer, "detail": p.detail} for p in large],
            )
        if refusals:
            raise _invalid(refusals)
        return values

    def _records(self, source: str, result: Normalised, values: list[bytes]) -> list[Record]:
        records = [
            Record(self.topic, value, event.subject.encode(), CLOUD_EVENT_HEADERS)
            for (_, event), value in zip(result.events, values, strict=True)
        ]
        for _, item, reason in result.unusable:
            value = json.dumps(item).encode()
            if len(value) > self.limits.max_event_bytes:
                raise TooLarge(
                    f"an unusable item ({reason}) encodes to {len(value)} bytes, more than "
                    f"the {self.limits.max_event_bytes} a dead letter may hold",
                )
            records.append(
                Record(
                    dlq(self.topic),
                    value,
                    source.encode(),
                    [
                        ("leadrouter-error", reason.encode()),
                        ("leadrouter-original-topic", self.topic.encode()),
                        ("leadrouter-source", source.encode()),
                    ],
                )
            )
        return records


def _per_kind(kinds: Iterable[str]) -> dict[str, int]:
    """How many of each kind; a plain loop costs a third of collections.Counter's set-up for
    the one or two kinds a request holds."""
    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _invalid(problems: list[Problem]) -> Invalid:
    first = problems[0]
    return Invalid(
        f"{first.pointer}: {first.detail}",
        errors=[{"pointer": p.pointer, "detail": p.detail} for p in problems],
    )
