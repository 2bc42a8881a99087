"""The HTTP shell every service shares: problem+json errors, health, readiness and /metrics.

Every error any route can answer is `application/problem+json` (RFC 9457) and documented as
such in the OpenAPI document: 422 with the `Problem` schema (not FastAPI's
HTTPValidationError), 400 on every route (a NUL character in the URL, an unreadable body),
and a `default` response for the rest.
"""

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.asyncapi import asyncapi_document
from shared.auth import Authenticator, JwtVerifier
from shared.errors import BadRequest, Invalid, LeadrouterError
from shared.metrics import BUILD_INFO
from shared.runtime import settled_heap

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# RFC 9457's members, plus `errors`: one entry per offending field, named by a JSON pointer.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem detail",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem_response(error: LeadrouterError, instance: str | None = None) -> JSONResponse:
    """Render an error as an application/problem+json response."""
    body: dict[str, Any] = {
        "type": error.problem_type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance:
        body["instance"] = instance
    if error.errors:
        body["errors"] = error.errors
    return JSONResponse(
        body, status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON
    )


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """A route's answer encoded once, by the model's own serializer.

    For hot routes: FastAPI passes a Response through as it is, where a returned model would
    be validated against `response_model` again and then serialized (the route keeps
    `response_model`, so the OpenAPI document still describes the body).
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def validation_errors(errors: Any, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as problem `errors`: a JSON pointer to the offending field and a message."""
    out = []
    for err in errors:
        loc = [str(p) for p in (*prefix, *err.get("loc", ())) if p != "body"]
        out.append({"pointer": "/" + "/".join(loc), "detail": err.get("msg", "invalid")})
    return out


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Route `responses=` for error statuses, each documented as problem+json."""
    return {status: {"description": text} for status, text in descriptions.items()}


def openapi_body(schema_type: Any, content_type: str = "application/json") -> dict[str, Any]:
    """OpenAPI for a request body a handler reads itself (to answer 413/415/400 its own way)."""
    schema = TypeAdapter(schema_type).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {
        "requestBody": {"required": True, "content": {content_type: {"schema": inline(schema)}}}
    }


def create_app(
    title: str,
    runtime: "Runtime",
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str = "",
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """A FastAPI app with the shared error path, /healthz, /readyz and /metrics.

    The runtime is kept on `app.state.runtime` for the session dependencies, the API keys on
    `app.state.authenticator` for the security dependency (shared/auth.py). `routers` are the
    service's own routes, matched before the operations routes (a request tries each route's
    pattern in turn: the busy API should not first try /healthz, /readyz, ...).
    """

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            with settled_heap():  # from the end of start-up to the start of shutdown
                yield

    app = FastAPI(title=title, description=description, lifespan=serving, version="0.1.0")
    app.state.runtime = runtime
    app.add_middleware(RefuseNulInUrl)
    for router in routers:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_openapi(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    settings = runtime.settings
    verifier = (
        JwtVerifier(settings.jwt_jwks_url, settings.jwt_issuer, settings.jwt_audience)
        if settings.jwt_jwks_url
        else None
    )
    app.state.authenticator = Authenticator.from_settings(
        settings.api_keys_file, settings.host, runtime.service, verifier
    )
    BUILD_INFO.info({"version": app.version, "service": title.removeprefix("leadrouter ")})

    @app.exception_handler(LeadrouterError)
    async def _problem(request: Request, exc: LeadrouterError) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        detail = f"{errors[0]['pointer']}: {errors[0]['detail']}" if errors else "invalid request"
        return problem_response(Invalid(detail, errors=errors), request.url.path)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # Nesting deep enough to exhaust the parser's recursion is refused, not a crash.
        error = BadRequest("the body is nested too deeply to read", title="Bad Request")
        return problem_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        error = LeadrouterError("unexpected error; the service log has the details", status=500)
        return problem_response(error, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; a path
            # served by several routes (GET and DELETE /v1/leads/{id}) allows them all.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        error = LeadrouterError(str(exc.detail), status=exc.status_code, headers=headers)
        return problem_response(error, request.url.path)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: what this service needs answers (ready, degraded or unavailable)",
        responses={
            200: {"content": {"application/json": {"schema": READINESS_SCHEMA}}},
            503: {
                "description": "Not ready; `reason` says why",
                "content": {"application/json": {"schema": READINESS_SCHEMA}},
            },
        },
    )
    async def readyz() -> JSONResponse:
        problem = await runtime.readiness_problem()
        if problem:
            return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
        degraded = runtime.degradation()
        if degraded:
            return JSONResponse({"status": "degraded", "reason": degraded})
        return JSONResponse({"status": "ready"})

    @app.get("/asyncapi.json", tags=["operations"], summary="The event contract (AsyncAPI 3.0)")
    async def asyncapi() -> dict[str, Any]:
        s = runtime.settings
        return asyncapi_document(namespace=s.topic_namespace, bootstrap=s.kafka_bootstrap)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
}


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path (for a 405's Allow)."""
    methods: set[str] = set()
    pending: list[Any] = list(app.router.routes)
    while pending:
        route = pending.pop()
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and not hasattr(route, "methods"):
            pending.extend(inner.routes)  # an included router: its own routes
            continue
        if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route.methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


def problem_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Document every error as problem+json: 422 and all 4xx/5xx, 400 and a default on every
    route (FastAPI's HTTPValidationError schema describes a body leadrouter never sends)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            takes_input = operation.get("parameters") or operation.get("requestBody")
            responses.setdefault(
                "400", {"description": "A NUL character in the URL, or an unreadable body"}
            )
            if takes_input:
                responses.setdefault(
                    "422", {"description": "Invalid input; each error's pointer names the field"}
                )
            responses.setdefault("default", {"description": "Unexpected error"})
            for status, response in responses.items():
                if path == "/readyz" and status == "503":
                    continue
                if status == "default" or status[0] in "45":
                    response["content"] = PROBLEM_CONTENT
                    response.setdefault("description", "Problem")
    return spec


class RefuseNulInUrl:
    """ASGI middleware: a NUL character in the path or query is a 400 (no database takes it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").lower()
            if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
                error = BadRequest("the URL holds a NUL character (%00)", pointer="/")
                await problem_response(error, None)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def runtime_of(request: Request) -> "Runtime":
    """The running service's Runtime (set on `app.state.runtime` by the app factory)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A dependency: a session for reads (no transaction kept open after the handler)."""
    async with runtime_of(request).sessions() as session:
        yield session


async def write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A dependency: the unit of work of one request.

    Commits when the handler returns (rolls back when it raises), then wakes the outbox
    relay and the timers so what the request wrote is published at once.
    """
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        async with session.begin():
            yield session
    runtime.committed()


ReadSession = Annotated[AsyncSession, Depends(read_session)]
WriteSession = Annotated[AsyncSession, Depends(write_session)]
