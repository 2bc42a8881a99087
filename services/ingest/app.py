"""Ingest: the HTTP front door that turns lead events into Kafka records acked by all replicas."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.events import CONTENT_TYPE, CloudEvent
from shared.http import Problem, create_app, openapi_body, validation_errors
from shared.kafka import LEAD_EVENTS
from shared.runtime import Runtime
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS_PER_REQUEST = 1000
JSON_TYPES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}

EVENTS = Counter(
    "leadrouter_ingest_events_total",
    "Events received, by source and outcome",
    ["source", "outcome"],
)
PUBLISH_SECONDS = Histogram(
    "leadrouter_ingest_kafka_publish_seconds",
    "Time from sending a request's events to Kafka's acknowledgement of all of them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_native = TypeAdapter(NativeLeadEvent)


def build_app(settings: Settings | None = None) -> FastAPI:
    """The ingest application."""
    settings = settings or get_settings()
    runtime = Runtime(settings, "ingest")
    topic = settings.topic(LEAD_EVENTS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    async def readiness(app: FastAPI) -> str | None:
        return await runtime.readiness_problem()

    app = create_app(
        "leadrouter ingest",
        lifespan,
        readiness,
        description="Takes lead events from the native API and marketing-automation webhooks.",
    )

    async def publish(events: list[CloudEvent]) -> None:
        """Send all events together; wait for Kafka to acknowledge every one, or fail with 503."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(settings.kafka_publish_timeout_s):
                acks = [
                    await runtime.producer.send(
                        topic,
                        value=event.to_bytes(),
                        key=event.subject.encode(),
                        headers=[("content-type", CONTENT_TYPE.encode())],
                    )
                    for event in events
                ]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            log.warning("kafka did not acknowledge %d event(s): %s", len(events), exc)
            raise Problem(
                503,
                "Kafka did not acknowledge the events in time; nothing is lost by retrying "
                "the same request (events are deduplicated by id)",
                headers={"Retry-After": "5"},
            ) from exc
        PUBLISH_SECONDS.observe(time.perf_counter() - started)

    @app.post(
        "/v1/events",
        status_code=202,
        tags=["events"],
        summary="Send one lead event or a JSON array of up to 1,000",
        openapi_extra=openapi_body(NativeLeadEvent | list[NativeLeadEvent]),
        responses={
            202: {"description": "Every event is in Kafka, acknowledged by all in-sync replicas"},
            400: {"description": "Body is not valid JSON"},
            413: {"description": "Body larger than 1 MiB, or more than 1,000 events"},
            415: {"description": "Not JSON"},
            422: {
                "description": "An event failed validation; the pointer names its index and field"
            },
            503: {"description": "Kafka unavailable; retry after Retry-After seconds"},
        },
    )
    async def post_events(request: Request) -> JSONResponse:
        items = await _read_items(request)
        errors: list[dict[str, Any]] = []
        parsed: list[NativeLeadEvent] = []
        for index, item in enumerate(items):
            try:
                parsed.append(_native.validate_python(item))
            except ValidationError as exc:
                errors.extend(validation_errors(exc.errors(), (index,)))
        if errors:
            EVENTS.labels("api", "invalid").inc(len(items))
            raise Problem(422, f"{errors[0]['pointer']}: {errors[0]['detail']}", errors=errors)
        events = [native_to_cloud_event(item, "api") for item in parsed]
        await publish(events)
        EVENTS.labels("api", "accepted").inc(len(events))
        return JSONResponse(
            {"accepted": len(events), "ids": [e.id for e in events]}, status_code=202
        )

    return app


async def _read_items(request: Request) -> list[Any]:
    """The request's events as a list, after the size, content-type and JSON checks."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise Problem(
            415, f"send JSON (Content-Type: application/json), not {content_type or 'nothing'!r}"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Problem(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise Problem(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from exc
    items = body if isinstance(body, list) else [body]
    if not items:
        raise Problem(
            422, "the array holds no events", errors=[{"pointer": "/", "detail": "empty"}]
        )
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise Problem(
            413, f"{len(items)} events in one request; send at most {MAX_EVENTS_PER_REQUEST}"
        )
    return items
