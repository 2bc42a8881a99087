import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest import auth
from services.ingest.ratelimit import TokenBuckets

BODY = b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":123,"occurredAt":1}]'
URI = "https://leads.example.com/v1/webhooks/hubspot"
NOW_MS = 1_795_424_400_000


def hubspot_headers(secret="s3cret", method="POST", uri=URI, body=BODY, ts=NOW_MS):
    # Computed independently of the code under test, the way HubSpot documents v3.
    message = f"{method}{uri}".encode() + body + str(ts).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode(), str(ts)


def test_hubspot_v3_accepts_a_fresh_correct_signature():
    signature, ts = hubspot_headers()
    auth.verify_hubspot("s3cret", "POST", URI, BODY, signature, ts, NOW_MS + 1000, 300)


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY.replace(b"123", b"124")},  # tampered body
        {"secret": "other"},
        {"uri": URI + "?x=1"},
    ],
)
def test_hubspot_v3_rejects_a_signature_for_anything_else(change):
    signature, ts = hubspot_headers(**change)
    with pytest.raises(auth.Unauthorized, match="does not match"):
        auth.verify_hubspot("s3cret", "POST", URI, BODY, signature, ts, NOW_MS, 300)


def test_hubspot_v3_rejects_an_old_timestamp_as_a_replay():
    signature, ts = hubspot_headers(ts=NOW_MS - 301_000)
    with pytest.raises(auth.Unauthorized, match="replay"):
        auth.verify_hubspot("s3cret", "POST", URI, BODY, signature, ts, NOW_MS, 300)


def test_hubspot_v3_decodes_the_escapes_hubspot_decodes():
    encoded = "https://leads.example.com/v1/webhooks/hubspot?next=%2Fa%3Ab"
    decoded = "https://leads.example.com/v1/webhooks/hubspot?next=/a:b"
    signature, ts = hubspot_headers(uri=decoded)
    auth.verify_hubspot("s3cret", "POST", encoded, BODY, signature, ts, NOW_MS, 300)


def test_missing_headers_are_unauthorized():
    with pytest.raises(auth.Unauthorized, match="Timestamp is missing"):
        auth.verify_hubspot("s", "POST", URI, BODY, "sig", None, NOW_MS, 300)
    with pytest.raises(auth.Unauthorized, match="missing"):
        auth.verify_mautic("s", BODY, None)


def test_mautic_and_segment_signatures_as_documented():
    mautic = base64.b64encode(hmac.new(b"k", BODY, hashlib.sha256).digest()).decode()
    auth.verify_mautic("k", BODY, mautic)
    with pytest.raises(auth.Unauthorized):
        auth.verify_mautic("k", BODY + b" ", mautic)
    segment = hmac.new(b"k", BODY, hashlib.sha1).hexdigest()
    auth.verify_segment("k", BODY, segment)
    with pytest.raises(auth.Unauthorized):
        auth.verify_segment("k", BODY, segment.upper() + "0")


def test_token_bucket_allows_the_burst_then_paces():
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    assert [buckets.take("hubspot", 0.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("hubspot", 0.0) == pytest.approx(0.5)
    assert buckets.take("segment", 0.0) == 0  # each source has its own bucket
    assert buckets.take("hubspot", 0.5) == 0


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_time(gaps):
    buckets = TokenBuckets(rate_per_s=10, burst=5)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += buckets.take("k", now) == 0
    assert allowed <= 5 + 10 * now + 1e-9
