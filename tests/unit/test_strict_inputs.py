"""Strict booleans and dates on every API, generated from the OpenAPI documents: every boolean
in a request body refuses 0, and every date or date-time (query or body) refuses 0.5, with a
422 problem naming the field (pydantic's lax mode read them as false and as 1970)."""

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.handoff.app import build_app as build_handoff
from services.ingest.app import build_app as build_ingest
from services.scoring.app import build_app as build_scoring
from shared.settings import Settings

SETTINGS = Settings(
    database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
    kafka_bootstrap="127.0.0.1:1",
)
WRONG = {"boolean": 0, "date-time": "0.5", "date": "0.5"}


def kind(schema: dict[str, Any]) -> str | None:
    """The kind (boolean, date-time or date) of the schema or of one branch of it, if any."""
    for branch in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        if branch.get("type") == "boolean":
            return "boolean"
        if branch.get("format") in ("date-time", "date"):
            return str(branch["format"])
    return None


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def strict_cases(spec: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(method, path, where, field, kind) for every boolean and date of every operation."""
    cases = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                found = kind(parameter.get("schema", {}))
                if found and parameter["in"] == "query":
                    cases.append((method, path, "query", parameter["name"], found))
            content = operation.get("requestBody", {}).get("content", {})
            body = resolve(spec, content.get("application/json", {}).get("schema", {}))
            for name, schema in body.get("properties", {}).items():
                found = kind(resolve(spec, schema))
                if found:
                    cases.append((method, path, "body", name, found))
    return cases


@pytest.mark.parametrize("build", [build_ingest, build_scoring, build_handoff])
def test_every_boolean_and_date_refuses_what_only_looks_like_one(build):
    app = build(SETTINGS)
    client = TestClient(app, raise_server_exceptions=False)
    cases = strict_cases(app.openapi())
    for method, path, where, field, found in cases:
        url = re.sub(r"\{\w+\}", "x", path)
        if where == "query":
            response = client.request(method, url, params={field: WRONG[found]})
            pointer = f"/{field}"
        else:
            response = client.request(method, url, json={field: WRONG[found]})
            pointer = f"/{field}"
        assert response.status_code == 422, (method, path, field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        pointers = [e["pointer"] for e in response.json().get("errors", [])]
        assert any(p.endswith(pointer) for p in pointers), (path, field, pointers)
    if build is build_handoff:  # the three: availability, funnel, audit
        assert {(p, f) for _, p, _, f, _ in cases} >= {
            ("/v1/reps/{rep_id}/availability", "available"),
            ("/v1/funnel", "until"),
            ("/v1/funnel", "since"),
            ("/v1/audit", "since"),
        }


def test_the_board_funnel_refuses_a_number_for_a_date():
    client = TestClient(build_handoff(SETTINGS), raise_server_exceptions=False)
    assert client.get("/board/fragments/funnel", params={"until": "0.5"}).status_code == 422
