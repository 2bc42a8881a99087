"""Ingest's HTTP API: the native event endpoint and one webhook path per registered source."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, Security
from fastapi.security import APIKeyHeader
from pydantic import Field

from services.ingest.normalise import NativeLeadEvent
from services.ingest.schemas import IngestResult
from services.ingest.service import IngestService
from services.ingest.sources import registry
from shared.auth import EventsWriter
from shared.http import model_response, openapi_body, problem_responses

router = APIRouter(prefix="/v1")

SOURCES = registry()
# The body's schema as documented: one event, or an array of 1 to 1,000 of them.
NativeBody = (
    NativeLeadEvent | Annotated[list[NativeLeadEvent], Field(min_length=1, max_length=1000)]
)
SOURCE_PATTERN = "^(" + "|".join(SOURCES) + ")$"


def _responses(credentials: str) -> dict[int | str, dict[str, Any]]:
    return problem_responses(
        {
            400: "Body is not valid JSON",
            401: f"Missing or wrong credentials: {credentials}",
            403: "The API key lacks the scope events:write",
            413: "Body larger than LEADROUTER_MAX_BODY_BYTES (1 MiB), too many events, or an "
            "event over LEADROUTER_MAX_EVENT_BYTES",
            415: "Not JSON",
            422: "Not the expected shape, or over a limit; each error's pointer names the field",
            429: "Over the source's rate limit; retry after Retry-After seconds",
            503: "Kafka unavailable; nothing of the request was published: retry after "
            "Retry-After seconds",
        }
    )


def service(request: Request) -> IngestService:
    """The app's IngestService (set by the app factory)."""
    ingest: IngestService = request.app.state.ingest
    return ingest


@router.post(
    "/events",
    status_code=202,
    tags=["events"],
    summary="Send one lead event or a JSON array of up to 1,000",
    response_model=IngestResult,
    response_description="Every event is in Kafka, acknowledged by all in-sync replicas",
    openapi_extra=openapi_body(NativeBody),
    responses=_responses("Authorization: Bearer <API key> with the scope events:write"),
)
async def post_events(principal: EventsWriter, request: Request) -> Response:
    # The key's name is the source; without a key file (development) events come from "api".
    result = await service(request).native(
        request, "api" if principal.anonymous else principal.name
    )
    return model_response(result, 202)


# Platforms cannot send our API keys: they sign each request, checked per source in the
# service. Declared so the OpenAPI document states how every operation is authenticated.
WEBHOOK_SIGNATURE = APIKeyHeader(
    name="X-Signature",
    scheme_name="webhookSignature",
    description="The platform's signature: "
    + "; ".join(f"{name}: {s.SIGNATURE}" for name, s in SOURCES.items())
    + ". Set up: docs/ingest.md.",
    auto_error=False,
)


@router.post(
    "/webhooks/{source}",
    status_code=202,
    tags=["webhooks"],
    summary="Webhooks from " + ", ".join(SOURCES),
    description=" ".join(f"{name}: {s.SIGNATURE}." for name, s in SOURCES.items())
    + " See docs/ingest.md for each platform's set-up.",
    response_model=IngestResult,
    response_description="Every event is in Kafka, acknowledged by all in-sync replicas",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": ["object", "array"]},
                    "examples": {
                        name: {"summary": name, "value": s.EXAMPLE} for name, s in SOURCES.items()
                    },
                }
            },
        }
    },
    responses=_responses("the platform's signature header"),
    dependencies=[Security(WEBHOOK_SIGNATURE)],
)
async def post_webhook(
    request: Request, source: str = Path(..., pattern=SOURCE_PATTERN)
) -> Response:
    return model_response(await service(request).webhook(request, source), 202)
