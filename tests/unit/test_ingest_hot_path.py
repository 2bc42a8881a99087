"""POST /v1/events skips the framework (services/ingest/hot_path.py): what a caller gets from
it is what the documented route answers. A query string sends the same request through the
framework's route, so each case is asked both ways and the answers compared."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import build_app
from shared.auth import authorize, key_file_line
from shared.errors import Unauthorized
from shared.settings import Settings

NOW = datetime.now(UTC)
ACTIVITY = {"type": "page_view", "occurred_at": NOW.isoformat()}
EVENT: dict[str, object] = {
    "id": "hot-1",
    "identity": {"email": "ana@acme.example"},
    "attributes": {"company": "Acme"},
    "activity": ACTIVITY,
}
WRITER = {"authorization": "Bearer writer-key"}
READER = {"authorization": "Bearer reader-key"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(
        key_file_line("web", "writer-key", ["events:write"])
        + "\n"
        + key_file_line("board", "reader-key", ["leads:read"])
        + "\n"
    )
    app = build_app(Settings(api_keys_file=keys))
    published: list[list[object]] = []

    async def publish(records: list[object]) -> None:  # Kafka's part is tested elsewhere
        published.append(records)

    app.state.ingest.publisher.publish = publish
    app.state.published = published
    return app


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def both_ways(client, body, headers, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type, **headers}
    hot = client.post("/v1/events", content=raw, headers=headers)
    routed = client.post("/v1/events?via=route", content=raw, headers=headers)
    return hot, routed


def same_answer(hot, routed):
    assert hot.status_code == routed.status_code, (hot.text, routed.text)
    assert hot.json() == routed.json()
    for name in ("content-type", "www-authenticate", "retry-after"):
        assert hot.headers.get(name) == routed.headers.get(name), name


@pytest.mark.parametrize(
    ("body", "headers", "content_type", "status"),
    [
        ([EVENT, {**EVENT, "id": "hot-2"}], WRITER, "application/json", 202),
        ({**EVENT, "id": None}, WRITER, "application/json", 202),  # a fresh id each time
        (EVENT, {}, "application/json", 401),
        (EVENT, {"authorization": "Bearer unknown"}, "application/json", 401),
        (EVENT, {"authorization": "Basic d2ViOnB3"}, "application/json", 401),
        (EVENT, READER, "application/json", 403),
        (EVENT, WRITER, "text/plain", 415),
        (b"{not json", WRITER, "application/json", 400),
        ({**EVENT, "identity": {}}, WRITER, "application/json", 422),
        (
            {**EVENT, "activity": {**ACTIVITY, "occurred_at": "2026-11-23"}},
            WRITER,
            "application/json",
            422,
        ),
        (
            {
                **EVENT,
                "activity": {
                    **ACTIVITY,
                    "occurred_at": (NOW + timedelta(hours=1)).isoformat(),
                },
            },
            WRITER,
            "application/json",
            422,
        ),
    ],
)
def test_the_hot_path_answers_as_the_route_does(client, body, headers, content_type, status):
    hot, routed = both_ways(client, body, headers, content_type)
    assert hot.status_code == status, hot.text
    if status == 202 and isinstance(body, dict) and body["id"] is None:
        assert hot.json()["accepted"] == routed.json()["accepted"] == 1
        assert hot.json()["ids"] != routed.json()["ids"]
        return
    same_answer(hot, routed)


def test_the_hot_path_publishes_what_the_route_publishes(app, client):
    app.state.published.clear()
    hot, routed = both_ways(client, EVENT, WRITER)
    assert hot.status_code == routed.status_code == 202
    first, second = app.state.published
    assert [(r.topic, r.key, r.value, r.headers) for r in first] == [
        (r.topic, r.key, r.value, r.headers) for r in second
    ]


def test_the_usual_request_does_not_go_through_the_framework(app, client):
    # A security override only reaches requests the framework's route serves.
    def refuse() -> None:
        raise Unauthorized("served by the framework's route")

    app.dependency_overrides[authorize] = refuse
    try:
        hot, routed = both_ways(client, EVENT, WRITER)
    finally:
        app.dependency_overrides.clear()
    assert hot.status_code == 202
    assert routed.status_code == 401


def test_other_methods_and_paths_still_reach_the_app(client):
    assert client.get("/v1/events", headers=WRITER).status_code == 405
    assert client.get("/healthz").json() == {"status": "ok"}
