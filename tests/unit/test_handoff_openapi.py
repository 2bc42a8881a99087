"""The handoff API's OpenAPI document says what each route answers, errors as problem+json."""

from services.handoff.app import build_app
from shared.settings import Settings


def operations():
    spec = build_app(Settings()).openapi()
    for path, methods in spec["paths"].items():
        if path.startswith("/v1/"):
            for method, operation in methods.items():
                yield f"{method.upper()} {path}", operation


def test_every_error_a_route_answers_is_documented_as_problem_json():
    for name, operation in operations():
        errors = {code: r for code, r in operation["responses"].items() if code.startswith("4")}
        for code, response in errors.items():
            assert list(response["content"]) == ["application/problem+json"], (name, code)


def test_routes_document_their_statuses_and_return_schemas():
    documented = {name: set(op["responses"]) for name, op in operations()}
    assert {"404"} <= documented["GET /v1/handoffs/{handoff_id}"]
    assert {"403", "404", "409", "422"} <= documented["POST /v1/handoffs/{handoff_id}/{action}"]
    assert {"404", "422"} <= documented["PUT /v1/reps/{rep_id}/availability"]
    assert "422" in documented["GET /v1/handoffs"] and "422" in documented["GET /v1/funnel"]
    schemas = {
        name: success["content"]["application/json"]["schema"]
        for name, op in operations()
        for code, success in op["responses"].items()
        if code in ("200", "202")
    }
    assert set(schemas) == set(documented), "every route documents its success response"
    assert schemas["GET /v1/handoffs/{handoff_id}"] == {"$ref": "#/components/schemas/HandoffOut"}
    assert schemas["GET /v1/funnel"] == {"$ref": "#/components/schemas/FunnelOut"}
    assert schemas["GET /v1/reps"]["items"] == {"$ref": "#/components/schemas/RepOut"}
