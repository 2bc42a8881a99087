"""The HTTP shell every service shares: problem+json errors, health, readiness and /metrics."""

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.metrics import BUILD_INFO

PROBLEM_JSON = "application/problem+json"

ReadinessCheck = Callable[[FastAPI], Awaitable[str | None]]


class Problem(Exception):
    """An error answered as RFC 9457 problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.title = title or HTTPStatus(status).phrase


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    """Render a Problem as an application/problem+json response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def validation_errors(errors: Any, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as problem `errors`: a JSON pointer to the offending field and a message."""
    out = []
    for err in errors:
        loc = [str(p) for p in (*prefix, *err.get("loc", ())) if p != "body"]
        out.append({"pointer": "/" + "/".join(loc), "detail": err.get("msg", "invalid")})
    return out


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
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    description: str = "",
) -> FastAPI:
    """A FastAPI app with the shared error path, /healthz, /readyz and /metrics."""
    app = FastAPI(title=title, description=description, lifespan=lifespan, version="0.1.0")
    BUILD_INFO.info({"version": app.version, "service": title.removeprefix("leadrouter ")})

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        detail = f"{errors[0]['pointer']}: {errors[0]['detail']}" if errors else "invalid request"
        return problem_response(Problem(422, detail, errors=errors), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = Problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
        return problem_response(problem, request.url.path)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: Kafka and Postgres reachable")
    async def readyz() -> JSONResponse:
        problem = await readiness(app)
        if problem:
            return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
