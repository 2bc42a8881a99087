"""Ingest: the HTTP front door that turns lead events into Kafka records acked by all replicas."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Path, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from services.ingest import auth
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.ingest.ratelimit import TokenBuckets
from services.ingest.sources import Normalised, Unusable, hubspot, marketo, mautic, segment
from shared.auth import EventsWriter, Principal
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
from shared.http import create_app, openapi_body, validation_errors
from shared.kafka import LEAD_EVENTS, dlq
from shared.runtime import Runtime
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

JSON_TYPES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}
SOURCES = ("hubspot", "marketo", "mautic", "segment")

REQUESTS = Counter(
    "leadrouter_ingest_requests_total",
    "Requests by source and outcome (accepted, or the reason they were refused)",
    ["source", "outcome"],
)
EVENTS = Counter(
    "leadrouter_ingest_events_total",
    "Events by source, platform event type and outcome (accepted, ignored, dead_lettered, invalid)",
    ["source", "type", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "leadrouter_ingest_request_duration_seconds",
    "Time from receiving a request to answering it",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLISH_SECONDS = Histogram(
    "leadrouter_ingest_kafka_publish_seconds",
    "Time from sending a request's events to Kafka's acknowledgement of all of them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_native = TypeAdapter(NativeLeadEvent)

EXAMPLES = {
    "hubspot": [
        {
            "eventId": 1001,
            "subscriptionId": 25,
            "portalId": 33,
            "appId": 1160452,
            "occurredAt": 1795424400000,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 123,
            "changeSource": "CRM",
            "propertyName": "jobtitle",
            "propertyValue": "VP Sales",
        }
    ],
    "mautic": {
        "mautic.form_on_submit": [
            {
                "submission": {
                    "id": 7,
                    "form": {"id": 1, "name": "Demo request", "alias": "demo"},
                    "lead": {
                        "id": 42,
                        "fields": {"core": {"email": {"value": "ana@acme.example"}}},
                    },
                    "referer": "https://acme.example/demo",
                },
                "timestamp": "2026-11-23T09:30:00+00:00",
            }
        ]
    },
    "segment": {
        "type": "track",
        "event": "Demo Request",
        "messageId": "ajs-1",
        "userId": "u-42",
        "anonymousId": "a-42",
        "context": {"traits": {"email": "ana@acme.example"}},
        "properties": {"plan": "team"},
        "timestamp": "2026-11-23T09:30:00Z",
    },
    "marketo": {
        "id": "42-1001-2026-11-23 09:30:00",
        "identity": {"email": "ana@acme.example", "external_ids": {"marketo": "42"}},
        "attributes": {"company": "Acme", "job_title": "VP Sales"},
        "activity": {"type": "form_submit", "occurred_at": "2026-11-23 09:30:00"},
    },
}


def build_app(settings: Settings | None = None) -> FastAPI:
    """The ingest application."""
    settings = settings or get_settings()
    runtime = Runtime(settings, "ingest")
    topic = settings.topic(LEAD_EVENTS)
    buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app = create_app(
        "leadrouter ingest",
        runtime,
        lifespan,
        description="Takes lead events from the native API and marketing-automation webhooks. "
        "Every 202 means the events are in Kafka, acknowledged by all in-sync replicas.",
    )

    async def publish(source: str, result: Normalised) -> None:
        """Send the events (and DLQ copies) together; wait for Kafka to ack all, or 503."""
        started = time.perf_counter()
        acks: list[Any] = []
        try:
            async with asyncio.timeout(settings.kafka_publish_timeout_s):
                acks += [
                    await runtime.producer.send(
                        topic,
                        value=event.to_bytes(),
                        key=event.subject.encode(),
                        headers=[("content-type", CONTENT_TYPE.encode())],
                    )
                    for _, event in result.events
                ]
                acks += [
                    await runtime.producer.send(
                        dlq(topic),
                        value=json.dumps(item).encode(),
                        key=source.encode(),
                        headers=[
                            ("leadrouter-error", reason.encode()),
                            ("leadrouter-source", source.encode()),
                        ],
                    )
                    for _, item, reason in result.unusable
                ]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka did not acknowledge %d record(s): %s", len(acks), exc)
            raise Unavailable(
                "Kafka did not acknowledge the events in time; retry the same request "
                "(events are deduplicated by id, so nothing is counted twice)",
                headers={"Retry-After": "5"},
                title="Kafka unavailable",
            ) from exc
        PUBLISH_SECONDS.observe(time.perf_counter() - started)

    async def ingest(
        request: Request,
        source: str,
        authenticate: Callable[[bytes], str],
        normalise: Callable[[str, Any], Normalised],
    ) -> JSONResponse:
        """The one path every endpoint takes: check, authenticate, limit, normalise, publish."""
        started = time.perf_counter()
        outcome = "accepted"
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            try:
                source = authenticate(raw)
            except auth.Unauthorized as exc:
                raise Unauthorized(str(exc), title="Unauthorized") from exc
            retry_s = buckets.take(source, time.monotonic())
            if retry_s:
                raise RateLimited(
                    f"{source} is over its rate limit",
                    headers={"Retry-After": str(max(1, round(retry_s + 0.5)))},
                )
            try:
                payload = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadRequest(f"body is not valid JSON: {exc}") from exc
            try:
                result = normalise(source, payload)
            except Unusable as exc:
                raise Invalid(str(exc), errors=[{"pointer": "/", "detail": str(exc)}]) from exc
            check_count(len(result.events) + len(result.unusable))
            await publish(source, result)
        except LeadrouterError as problem:
            outcome = _OUTCOMES.get(problem.status, "error")
            raise
        finally:
            REQUESTS.labels(source, outcome).inc()
            REQUEST_SECONDS.labels(source).observe(time.perf_counter() - started)
        for kind, _ in result.events:
            EVENTS.labels(source, kind, "accepted").inc()
        for kind in result.ignored:
            EVENTS.labels(source, kind, "ignored").inc()
        for kind, _, reason in result.unusable:
            EVENTS.labels(source, kind, "dead_lettered").inc()
            log.warning("%s: an item went to the DLQ: %s", source, reason)
        return JSONResponse(
            {
                "accepted": len(result.events),
                "ignored": len(result.ignored),
                "dead_lettered": len(result.unusable),
                "ids": [event.id for _, event in result.events],
            },
            status_code=202,
        )

    def check_count(count: int) -> None:
        if count > settings.max_events_per_request:
            raise TooLarge(
                f"{count} events in one request; send at most {settings.max_events_per_request}",
            )

    def native_source(principal: Principal) -> Callable[[bytes], str]:
        # The key's name is the source; without a key file (development) events come from "api".
        source = "api" if principal.anonymous else principal.name
        return lambda raw: source

    def native_events(source: str, payload: Any) -> Normalised:
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise Invalid("the array holds no events", errors=[{"pointer": "/", "detail": "empty"}])
        check_count(len(items))  # before validating, so a huge array costs little
        parsed, errors = [], []
        for index, item in enumerate(items):
            try:
                parsed.append(_native.validate_python(item))
            except ValidationError as exc:
                errors.extend(validation_errors(exc.errors(), (index,)))
        if errors:
            EVENTS.labels(source, "native", "invalid").inc(len(items))
            raise Invalid(f"{errors[0]['pointer']}: {errors[0]['detail']}", errors=errors)
        return Normalised(events=[("native", native_to_cloud_event(i, source)) for i in parsed])

    @app.post(
        "/v1/events",
        status_code=202,
        tags=["events"],
        summary="Send one lead event or a JSON array of up to 1,000",
        openapi_extra=openapi_body(NativeLeadEvent | list[NativeLeadEvent]),
        responses=_responses("Authorization: Bearer <API key>", "events:write"),
    )
    async def post_events(principal: EventsWriter, request: Request) -> JSONResponse:
        return await ingest(request, "api", native_source(principal), native_events)

    # Read once: secret files are not re-read on the request path.
    secret_settings = {
        "hubspot": "hubspot_client_secret",
        "mautic": "mautic_webhook_secret",
        "segment": "segment_shared_secret",
        "marketo": "marketo_token",
    }
    secrets = {source: settings.secret(name) for source, name in secret_settings.items()}

    def webhook_auth(source: str, request: Request) -> Callable[[bytes], str]:
        secret = secrets[source]

        def authenticate(raw: bytes) -> str:
            if not secret:
                raise auth.Unauthorized(
                    f"{source} webhooks are not configured: "
                    f"set LEADROUTER_{secret_settings[source].upper()}"
                )
            headers = request.headers
            if source == "hubspot":
                url = request.url
                base = settings.public_base_url or f"{url.scheme}://{url.netloc}"
                uri = base.rstrip("/") + url.path + (f"?{url.query}" if url.query else "")
                auth.verify_hubspot(
                    secret,
                    request.method,
                    uri,
                    raw,
                    headers.get("x-hubspot-signature-v3"),
                    headers.get("x-hubspot-request-timestamp"),
                    now_ms=int(time.time() * 1000),
                    max_age_s=settings.webhook_max_age_s,
                )
            elif source == "mautic":
                auth.verify_mautic(secret, raw, headers.get("webhook-signature"))
            elif source == "segment":
                auth.verify_segment(secret, raw, headers.get("x-signature"))
            else:
                auth.verify_token(secret, headers.get("x-leadrouter-token"))
            return source

        return authenticate

    normalisers: dict[str, Callable[[str, Any], Normalised]] = {
        "hubspot": lambda _, payload: hubspot.normalise(payload),
        "mautic": lambda _, payload: mautic.normalise(payload),
        "segment": lambda _, payload: segment.normalise(payload),
        "marketo": lambda _, payload: marketo.normalise(payload, settings.marketo_timezone),
    }

    @app.post(
        "/v1/webhooks/{source}",
        status_code=202,
        tags=["webhooks"],
        summary="Webhooks from HubSpot, Marketo, Mautic and Segment",
        description="HubSpot: X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp. "
        "Mautic: Webhook-Signature. Segment: X-Signature. Marketo: X-Leadrouter-Token. "
        "See docs/ingest.md for each platform's set-up.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": ["object", "array"]},
                        "examples": {
                            name: {"summary": name, "value": value}
                            for name, value in EXAMPLES.items()
                        },
                    }
                },
            }
        },
        responses=_responses("the platform's signature header"),
        dependencies=[Security(WEBHOOK_SIGNATURE)],
    )
    async def post_webhook(
        request: Request, source: str = Path(..., pattern="^(hubspot|marketo|mautic|segment)$")
    ) -> JSONResponse:
        return await ingest(request, source, webhook_auth(source, request), normalisers[source])

    return app


# Platforms cannot send our API keys: they sign each request, checked per source in the handler.
# Declared so the OpenAPI document states how every operation is authenticated.
WEBHOOK_SIGNATURE = APIKeyHeader(
    name="X-Signature",
    scheme_name="webhookSignature",
    description="The platform's signature: X-HubSpot-Signature-v3 (with "
    "X-HubSpot-Request-Timestamp), Webhook-Signature (Mautic), X-Signature (Segment), "
    "X-Leadrouter-Token (Marketo). Set up: docs/ingest.md.",
    auto_error=False,
)

_OUTCOMES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "kafka_unavailable",
}


def _responses(auth_text: str, scope: str | None = None) -> dict[int | str, dict[str, Any]]:
    scoped: dict[int | str, dict[str, Any]] = (
        {403: {"description": f"The API key lacks the scope {scope}"}} if scope else {}
    )
    return {
        **scoped,
        202: {"description": "Every event is in Kafka, acknowledged by all in-sync replicas"},
        400: {"description": "Body is not valid JSON"},
        401: {"description": f"Missing or wrong credentials: {auth_text}"},
        413: {"description": "Body larger than the limit (1 MiB), or too many events"},
        415: {"description": "Not JSON"},
        422: {"description": "Validation failed; the pointer names the item index and field"},
        429: {"description": "Over the source's rate limit; retry after Retry-After seconds"},
        503: {"description": "Kafka unavailable; retry after Retry-After seconds"},
    }


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, after the content-type and size checks (signatures need the raw bytes)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
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
