"""The Tracking API's door, pure: write keys as each SDK sends them, gzip within the limit,
and the messages a call's body holds."""

import base64
import gzip
import json

import pytest

from services.ingest.normalise import Unusable
from services.ingest.tracking import TrackingLimits, decoded_body, messages, write_key
from shared.errors import BadRequest, TooLarge, Unauthorized, UnsupportedMediaType

LIMITS = TrackingLimits(tracking_max_message_bytes=2048, tracking_max_batch_bytes=8192)


def test_the_write_key_as_the_sdks_send_it():
    basic = "Basic " + base64.b64encode(b"wk-1:").decode()
    assert write_key(basic, b"{}") == "wk-1"  # segment-analytics-python, analytics-node
    assert write_key("Bearer wk-2", b"{}") == "wk-2"
    assert write_key(None, json.dumps({"writeKey": "wk-3"}).encode()) == "wk-3"  # analytics.js
    assert write_key(None, b"not json") is None
    assert write_key("Basic " + base64.b64encode(b":").decode(), b"{}") is None
    with pytest.raises(Unauthorized):
        write_key("Basic %%%", b"{}")


def test_gzip_bodies_are_read_within_the_batch_limit():
    body = json.dumps({"batch": [{"type": "track"}]}).encode()
    assert decoded_body(gzip.compress(body), {"content-encoding": "gzip"}, LIMITS) == body
    assert decoded_body(body, {}, LIMITS) == body
    with pytest.raises(TooLarge):  # inflated only up to the limit, then refused
        decoded_body(gzip.compress(b" " * 10_000_000), {"content-encoding": "gzip"}, LIMITS)
    with pytest.raises(TooLarge):
        decoded_body(b" " * 9000, {}, LIMITS)
    with pytest.raises(BadRequest):
        decoded_body(gzip.compress(body)[:-12], {"content-encoding": "gzip"}, LIMITS)
    with pytest.raises(UnsupportedMediaType):
        decoded_body(body, {"content-encoding": "br"}, LIMITS)


def test_a_call_is_typed_by_its_path_and_a_batch_shares_its_context():
    (one,) = messages("p", {"type": "track", "messageId": "m"}, LIMITS)
    assert one["type"] == "page"  # the path says what the call is
    batch = {
        "batch": [{"type": "track", "context": {"ip": "1.2.3.4"}}, {"type": "page"}],
        "context": {"library": {"name": "analytics-python"}, "ip": "0.0.0.0"},
    }
    first, second = messages("batch", batch, LIMITS)
    assert first["context"] == {"library": {"name": "analytics-python"}, "ip": "1.2.3.4"}
    assert second["context"]["ip"] == "0.0.0.0"
    with pytest.raises(TooLarge):
        messages("track", {"properties": {"x": "y" * 3000}}, LIMITS)
    with pytest.raises(Unusable):
        messages("batch", {"batch": "no"}, LIMITS)
    with pytest.raises(Unusable):
        messages("track", [], LIMITS)
