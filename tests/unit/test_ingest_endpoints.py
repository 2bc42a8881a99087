"""Issue 10: what the door refuses, and with which status, in-process (no Kafka is reached:
every request here is refused before publishing, or must be)."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.ingest.app import build_app
from services.scoring.app import build_app as build_scoring
from shared.settings import Settings

NOW = datetime.now(UTC)


def native(**changes):
    event = {
        "id": "door-1",
        "identity": {"email": "ana@acme.example"},
        "attributes": {"company": "Acme"},
        "activity": {"type": "page_view", "occurred_at": NOW.isoformat()},
    }
    for name, value in changes.items():
        event[name] = {**event[name], **value} if isinstance(value, dict) else value
    return event


@pytest.fixture(scope="module")
def client():
    settings = Settings(
        mautic_webhook_secret="mautic-secret",
        marketo_token="marketo-token",
        hubspot_client_secret="hs-secret",
        segment_shared_secret="segment-secret",
    )
    # No lifespan: nothing here may reach Kafka; a request that tries answers 500.
    return TestClient(build_app(settings), raise_server_exceptions=False)


def post(client, body, path="/v1/events", headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=raw, headers={"content-type": "application/json", **(headers or {})}
    )


def problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def pointers(body):
    return [e["pointer"] for e in body.get("errors", [])]


def test_an_event_too_large_for_its_derived_records_is_413_naming_the_limit(client):
    body = problem(post(client, native(attributes={"notes": "x" * 200_000})), 413)
    assert "65536" in body["detail"]


def test_a_string_too_long_or_too_many_attributes_is_422_naming_the_field(client):
    long = problem(post(client, native(attributes={"notes": "x" * 9000})), 422)
    assert pointers(long) == ["/attributes/notes"] and "8192" in long["detail"]
    many = {f"a{i}": i for i in range(101)}
    assert pointers(problem(post(client, native(attributes=many)), 422)) == ["/attributes"]


def test_nul_characters_are_refused_with_their_pointer_on_every_endpoint(client):
    body = problem(post(client, native(attributes={"company": "Ac\u0000me"})), 422)
    assert pointers(body) == ["/attributes/company"]
    external = native(identity={"email": None, "external_ids": {"crm": "1\u00002"}})
    assert pointers(problem(post(client, external), 422)) == ["/identity/external_ids/crm"]
    raw = json.dumps({"id": "x\u0000", "identity": {}}).encode()
    marketo = post(client, raw, "/v1/webhooks/marketo", {"x-leadrouter-token": "marketo-token"})
    assert pointers(problem(marketo, 422)) == ["/id"]


@pytest.mark.parametrize("depth", [200, 990])
def test_deep_nesting_is_refused_before_scoring_could_choke_on_it(client, depth):
    nested = "[" * depth + "]" * depth
    raw = json.dumps(native(attributes={"deep": "NESTED"})).replace('"NESTED"', nested)
    body = problem(post(client, raw.encode()), 422)
    assert "32" in body["detail"]
    if depth < 500:  # deeper still, the parser itself gives up: the pointer is then "/"
        assert body["errors"][0]["pointer"].startswith("/attributes/deep/0")


def test_an_event_beyond_the_clock_skew_tolerance_is_422(client):
    future = (NOW + timedelta(days=5 * 365)).isoformat()
    body = problem(post(client, native(activity={"occurred_at": future})), 422)
    assert pointers(body) == ["/activity/occurred_at"]
    assert "300 s" in body["detail"]


def test_a_500_is_counted_as_an_error_not_as_accepted(client):
    def count(outcome):
        value = REGISTRY.get_sample_value(
            "leadrouter_ingest_requests_total", {"source": "api", "outcome": outcome}
        )
        return value or 0.0

    accepted, errors = count("accepted"), count("error")
    response = post(client, native())  # Kafka was never started here: publishing fails
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert (count("accepted"), count("error")) == (accepted, errors + 1)


@pytest.mark.parametrize(
    "raw, where",
    [
        (b'{"company_size": 1e400}', "/attributes/company_size"),
        (b'{"company_size": NaN}', "/attributes/company_size"),
        (b'{"company_size": -Infinity}', "/attributes/company_size"),
    ],
)
def test_numbers_that_are_not_finite_are_422_naming_the_field(client, raw, where):
    body = json.dumps(native()).replace('{"company": "Acme"}', raw.decode()).encode()
    assert pointers(problem(post(client, body), 422)) == [where]


@pytest.mark.parametrize("when", [0, 1795424400, "2026-11-23T09:30:00", "2026-11-23"])
def test_occurred_at_must_be_an_rfc3339_string_with_a_zone(client, when):
    body = problem(post(client, native(activity={"occurred_at": when})), 422)
    assert pointers(body) == ["/activity/occurred_at"]


@pytest.mark.parametrize("path", ["/v1/events", "/v1/webhooks/mautic", "/v1/webhooks/segment"])
def test_json_nested_thousands_deep_is_problem_json_not_a_500(client, path):
    raw = b"[" * 100_000 + b"]" * 100_000
    response = post(client, raw, path, {"webhook-signature": "x", "x-signature": "x"})
    assert response.status_code in (401, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    native_response = post(client, raw)
    assert problem(native_response, 422)["errors"][0]["pointer"] == "/"


@pytest.mark.parametrize("url", ["/v1/leads/%00", "/v1/leads?email=%00@x.example"])
def test_nul_in_a_path_or_query_is_400_problem_json_on_scoring(url):
    scoring = TestClient(build_scoring(Settings()), raise_server_exceptions=False)
    assert problem(scoring.get(url), 400)["detail"].startswith("the URL holds a NUL")


def test_nul_in_a_path_or_query_is_400_problem_json_on_ingest(client):
    assert problem(client.get("/v1/events%00"), 400)
    assert problem(client.get("/healthz?x=%00"), 400)


@pytest.mark.parametrize("size", [1_048_200, 1_048_400, 1_048_560])
def test_bodies_just_under_the_body_limit_are_413_not_503(client, size):
    event = native(attributes={"notes": ""})
    padding = size - len(json.dumps(event).encode())
    event["attributes"]["notes"] = "x" * padding
    raw = json.dumps(event).encode()
    assert len(raw) == size
    body = problem(post(client, raw), 413)
    assert "Retry-After" not in body and "retry-after" not in post(client, raw).headers


def test_marketo_bodies_that_are_not_the_templates_shape_are_422(client):
    for raw in (b"null", b"1", b'"x"', b"[]", b"[1]"):
        response = post(
            client, raw, "/v1/webhooks/marketo", {"x-leadrouter-token": "marketo-token"}
        )
        problem(response, 422)


def test_an_empty_hubspot_array_is_422(client):
    url = "http://testserver/v1/webhooks/hubspot"
    ts = str(int(datetime.now(UTC).timestamp() * 1000))
    digest = hmac.new(b"hs-secret", b"POST" + url.encode() + b"[]" + ts.encode(), hashlib.sha256)
    headers = {
        "x-hubspot-signature-v3": base64.b64encode(digest.digest()).decode(),
        "x-hubspot-request-timestamp": ts,
    }
    problem(post(client, b"[]", "/v1/webhooks/hubspot", headers), 422)


def test_a_mautic_body_without_any_trigger_is_422(client):
    raw = b'{"timestamp": "2026-11-23T09:30:00+00:00"}'
    signature = base64.b64encode(hmac.new(b"mautic-secret", raw, hashlib.sha256).digest())
    problem(
        post(client, raw, "/v1/webhooks/mautic", {"webhook-signature": signature.decode()}), 422
    )


def test_a_single_native_object_gets_pointers_without_an_index(client):
    single = problem(post(client, native(activity={"type": "Bad Type"})), 422)
    assert pointers(single) == ["/activity/type"]
    array = problem(post(client, [native(), native(activity={"type": "Bad Type"})]), 422)
    assert pointers(array) == ["/1/activity/type"]
