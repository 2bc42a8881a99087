"""The Segment-spec Tracking API in-process on a real Kafka: what the SDKs send, what Segment
answers (200 {"success": true}, 400 over its sizes), write keys, gzip, CORS and path prefixes."""

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import build_app
from shared.auth import EVENTS_WRITE, LEADS_READ, key_file_line
from shared.kafka import LEAD_EVENTS, dlq
from shared.settings import Settings
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
WRITE_KEY = "wk-website-0123456789"
READ_KEY = "rk-reader-0123456789"
ORIGIN = "https://www.acme.example"
JSON = {"content-type": "application/json"}


@pytest.fixture
def tracking_settings(settings: Settings, tmp_path: Path) -> Settings:
    keys = tmp_path / "api-keys"
    keys.write_text(
        key_file_line("website", WRITE_KEY, [EVENTS_WRITE])
        + "\n"
        + key_file_line("reader", READ_KEY, [LEADS_READ])
        + "\n"
    )
    return settings.model_copy(
        update={"api_keys_file": keys, "tracking_cors_origins": f"{ORIGIN}, https://other.example"}
    )


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def page(message_id: str, anonymous_id: str = "anon-1", **extra: object) -> dict:
    return {
        "type": "page",
        "messageId": message_id,
        "anonymousId": anonymous_id,
        "properties": {"path": "/pricing", "url": "https://www.acme.example/pricing?x=1"},
        "context": {"campaign": {"source": "google", "medium": "cpc", "name": "spring"}},
        "timestamp": NOW,
        **extra,
    }


async def test_sdk_shaped_requests_are_published_and_answered_as_segment_does(tracking_settings):
    batch = {
        "batch": [page("m-1"), {**page("m-2"), "type": "screen", "name": "Pricing"}],
        "sentAt": NOW,
    }
    with TestClient(build_app(tracking_settings)) as client:
        # The server SDKs: /v1/batch, Basic auth, gzip (RudderStack's default).
        zipped = client.post(
            "/v1/batch",
            content=gzip.compress(json.dumps(batch).encode()),
            headers={
                **basic(WRITE_KEY),
                "content-type": "application/json",
                "content-encoding": "gzip",
            },
        )
        # analytics.js: one call at /v1/p, text/plain, the write key in the body.
        browser = client.post(
            "/v1/p",
            content=json.dumps({**page("m-3"), "writeKey": WRITE_KEY}),
            headers={"content-type": "text/plain;charset=UTF-8"},
        )
        # A host configured with a path: the SDK appends /v1/identify to it.
        prefixed = client.post(
            "/collect/segment/v1/identify",
            json={
                "messageId": "m-4",
                "anonymousId": "anon-1",
                "traits": {"email": "Ana@Acme.example"},
                "timestamp": NOW,
            },
            headers=basic(WRITE_KEY),
        )
        unusable = client.post("/v1/track", json={"event": "x"}, headers=basic(WRITE_KEY))
    for response in (zipped, browser, prefixed, unusable):
        assert (response.status_code, response.json()) == (200, {"success": True}), response.text
    events = [
        json.loads(r.value)
        for r in await read_topic(tracking_settings, tracking_settings.topic(LEAD_EVENTS), 4)
    ]
    by_type = {e["data"]["activity"]["type"]: e for e in events}
    assert set(by_type) == {"pricing_page_view", "screen_view", "identify"}
    viewed = by_type["pricing_page_view"]
    assert viewed["source"] == "leadrouter/ingest/website"  # the write key's name
    assert viewed["subject"] == "segment_anonymous:anon-1"
    properties = viewed["data"]["activity"]["properties"]
    assert properties["path"] == "/pricing" and properties["host"] == "www.acme.example"
    assert (properties["utm_source"], properties["utm_medium"], properties["utm_campaign"]) == (
        "google",
        "cpc",
        "spring",
    )
    assert by_type["identify"]["data"]["identity"] == {
        "email": "ana@acme.example",
        "external_ids": {"segment_anonymous": "anon-1"},
    }
    (dead,) = await read_topic(tracking_settings, dlq(tracking_settings.topic(LEAD_EVENTS)), 1)
    assert json.loads(dead.value) == {"event": "x", "type": "track"}


def test_write_keys_sizes_and_encodings_are_refused_as_segment_does(tracking_settings):
    with TestClient(build_app(tracking_settings), raise_server_exceptions=False) as client:
        none = client.post("/v1/track", json=page("r-1"))
        unknown = client.post("/v1/track", json=page("r-2"), headers=basic("nobody"))
        lacking = client.post("/v1/track", json=page("r-3"), headers=basic(READ_KEY))
        in_body = client.post("/v1/track", json={**page("r-4"), "writeKey": READ_KEY})
        big_message = client.post(
            "/v1/batch",
            json={"batch": [page("r-5", title="x" * 33_000)]},
            headers=basic(WRITE_KEY),
        )
        big_batch = client.post(
            "/v1/batch",
            json={"batch": [page(f"r-6-{n}", title="x" * 30_000) for n in range(18)]},
            headers=basic(WRITE_KEY),
        )
        bomb = client.post(
            "/v1/batch",
            content=gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}"),
            headers={**JSON, **basic(WRITE_KEY), "content-encoding": "gzip"},
        )
        not_gzip = client.post(
            "/v1/batch",
            content=b'{"batch": []}',
            headers={**JSON, **basic(WRITE_KEY), "content-encoding": "gzip"},
        )
        brotli = client.post(
            "/v1/batch",
            content=b"{}",
            headers={**JSON, **basic(WRITE_KEY), "content-encoding": "br"},
        )
        not_json = client.post(
            "/v1/batch",
            content=b"{",
            headers={**basic(WRITE_KEY), "content-type": "application/json"},
        )
    assert (none.status_code, unknown.status_code) == (401, 401)
    assert none.headers["www-authenticate"].startswith("Basic")
    assert (lacking.status_code, in_body.status_code) == (403, 403)
    assert EVENTS_WRITE in lacking.json()["detail"]
    for refused in (big_message, big_batch, bomb, not_gzip, not_json):
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert "32768" in big_message.json()["detail"]
    assert brotli.status_code == 415


def test_browsers_of_the_allowed_origins_only(tracking_settings):
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with TestClient(build_app(tracking_settings), raise_server_exceptions=False) as client:
        allowed = client.options("/v1/t", headers={"origin": ORIGIN, **preflight})
        other = client.options("/v1/t", headers={"origin": "https://evil.example", **preflight})
        posted = client.post(
            "/v1/t",
            content=json.dumps({**page("c-1"), "type": "track", "event": "Signed Up"}),
            headers={"origin": ORIGIN, "content-type": "text/plain"},
        )
        native = client.options("/v1/events", headers={"origin": ORIGIN, **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    # No write key: refused, and the browser may read why.
    assert posted.status_code == 401
    assert posted.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in native.headers  # only the Tracking API
