"""The Segment-spec Tracking API's routes (/v1/identify, /v1/track, ... /v1/batch), also under
any path prefix, and CORS for the browsers of the allow-listed origins."""

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.endpoints import service
from services.ingest.tracking import CALLS
from shared.http import problem_responses

router = APIRouter()

# Documents how the calls authenticate; the service checks the key (Basic, bearer or the body's
# writeKey, which a security scheme cannot express).
WRITE_KEY = HTTPBasic(
    scheme_name="writeKey",
    description="The write key as HTTP Basic auth: a key of LEADROUTER_API_KEYS_FILE with "
    "events:write as username, empty password (what the Segment and RudderStack SDKs send); "
    "analytics.js sends it as `writeKey` in the body instead. See docs/tracking.md.",
    auto_error=False,
)
DOCUMENTED = ["identify", "track", "page", "screen", "group", "alias", "batch"]
SUCCESS = {"success": True}
RESPONSES = {
    200: {
        "description": "Every message is in Kafka (or, if unusable, in the dead-letter topic)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["success"],
                    "properties": {"success": {"const": True}},
                }
            }
        },
    },
    **problem_responses(
        {
            400: "Not JSON, not gzip as declared, a message over 32 KB or a body over 500 KB",
            401: "No write key, or one nobody issued",
            403: "The write key lacks the scope events:write",
            415: "Neither JSON nor text/plain, or an encoding other than gzip",
            422: "Not the spec's shape (an object; a batch holds a `batch` array)",
            429: "Over the key's rate limit; retry after Retry-After seconds",
            503: "Kafka unavailable; nothing was published: retry (the SDKs do)",
        }
    ),
}


def _route(call: str) -> Callable[[Request], Coroutine[Any, Any, JSONResponse]]:
    async def tracking_call(request: Request) -> JSONResponse:
        await service(request).tracking(request, call)
        return JSONResponse(SUCCESS)

    return tracking_call


for _call in CALLS:
    _kind = CALLS[_call]
    _body = (
        {
            "type": "object",
            "required": ["batch"],
            "properties": {"batch": {"type": "array", "minItems": 1, "items": {"type": "object"}}},
        }
        if _kind == "batch"
        else {"type": "object"}
    )
    for _path, _shown in (
        (f"/v1/{_call}", _call in DOCUMENTED),
        (f"/{{prefix:path}}/v1/{_call}", False),
    ):
        router.add_api_route(
            _path,
            _route(_call),
            methods=["POST"],
            tags=["tracking"],
            summary=f"Segment-spec {_kind} call" if _kind != "batch" else "Segment-spec batch",
            description="The Segment Tracking API as analytics.js and the server SDKs call it; "
            'answers 200 {"success": true} as Segment does. See docs/tracking.md.',
            responses=RESPONSES,  # type: ignore[arg-type]
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _body}},
                }
            },
            dependencies=[Security(WRITE_KEY)],
            include_in_schema=_shown,
            name=f"tracking_{_call}" + ("" if _shown else "_prefixed"),
        )

TRACKING_PATH = re.compile(r"/v1/(" + "|".join(CALLS) + r")$")


def allowed_origins(setting: str) -> frozenset[str]:
    """The comma-separated LEADROUTER_TRACKING_CORS_ORIGINS as a set (trailing slashes cut)."""
    return frozenset(o.strip().rstrip("/") for o in setting.split(",") if o.strip())


class TrackingCors:
    """CORS on the Tracking API's paths alone: preflights answered, responses labelled, for the
    allow-listed origins (`*`: any). Other paths and origins pass through untouched."""

    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    def _allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not TRACKING_PATH.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            allowed = self._allowed(origin)
            answer = {"Vary": "Origin", "Allow": "POST, OPTIONS"}
            if allowed:
                answer |= {
                    "Access-Control-Allow-Origin": str(origin),
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": headers.get(
                        "access-control-request-headers",
                        "Content-Type, Content-Encoding, Authorization",
                    ),
                    "Access-Control-Max-Age": "86400",
                }
            response: Response = (
                Response(status_code=204, headers=answer)
                if allowed
                else JSONResponse(
                    {
                        "type": "about:blank",
                        "title": "Forbidden",
                        "status": 403,
                        "detail": f"origin {origin!r} is not in LEADROUTER_TRACKING_CORS_ORIGINS",
                    },
                    status_code=403,
                    headers=answer,
                    media_type="application/problem+json",
                )
            )
            await response(scope, receive, send)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return

        async def labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = str(origin)
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, labelled)
