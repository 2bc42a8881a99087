"""The Segment-spec Tracking API's door, pure: write keys, gzip bodies, Segment's size limits and
the calls a body holds. The messages then go through the same normaliser as Segment's webhook
destination (sources/segment.py).

Built to what the SDKs send, not to our own examples:
- the server SDKs (segment-analytics-python, @segment/analytics-node, RudderStack's) POST
  `{"batch": [...], "sentAt": ...}` to `<host>/v1/batch` with the write key as HTTP Basic auth
  (username, empty password), gzip-compressed when configured so (RudderStack: by default);
- analytics.js POSTs one call to `<apiHost>/t`, `/p`, `/i`, `/g`, `/a`, `/s` (or a batch to
  `/b`) with `Content-Type: text/plain` (no CORS preflight) and the write key in the body as
  `writeKey`;
- Segment answers 200 `{"success": true}`, and 400 to a message over 32 KB or a body over
  500 KB (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/).
"""

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.ingest.normalise import Unusable
from shared.auth import ANONYMOUS, EVENTS_WRITE, REFUSED, Authenticator, Principal
from shared.errors import BadRequest, Forbidden, TooLarge, Unauthorized, UnsupportedMediaType
from shared.settings import IngestSettings

# The spec's calls by every path the SDKs use: the names, analytics.js's one-letter paths and
# the batch endpoint's alias `import`.
CALLS = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "batch": "batch",
    "import": "batch",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": "batch",
}
CONTENT_TYPES = {"text/plain"}  # besides JSON: what analytics.js sends
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="leadrouter tracking"'}


@dataclass(frozen=True)
class TrackingLimits:
    """Segment's documented sizes, each named as its setting (LEADROUTER_TRACKING_MAX_*)."""

    tracking_max_message_bytes: int = 32 * 1024
    tracking_max_batch_bytes: int = 500 * 1024

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> "TrackingLimits":
        """The limits a running ingest applies."""
        return cls(settings.tracking_max_message_bytes, settings.tracking_max_batch_bytes)


def decoded_body(raw: bytes, headers: Mapping[str, str], limits: TrackingLimits) -> bytes:
    """The body as JSON bytes: gunzipped when Content-Encoding says gzip, at most the batch limit
    (decompressed: a small gzip bomb is refused without inflating it in full)."""
    encoding = headers.get("content-encoding", "").strip().lower()
    cap = limits.tracking_max_batch_bytes
    if encoding in ("", "identity"):
        body = raw
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, cap + 1)
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid gzip: {exc}") from exc
        if len(body) <= cap and not inflater.eof:
            raise BadRequest("the gzip body is truncated")
    else:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r}: send gzip or no encoding")
    if len(body) > cap:
        raise TooLarge(f"the body is larger than {cap} bytes (Segment's batch limit)")
    return body


def messages(call: str, payload: Any, limits: TrackingLimits) -> list[Any]:
    """The spec messages a call's body holds, each within the message limit.

    A single call's type is the path's (identify, track, ...); a batch's top-level `context`
    and `integrations` apply to each of its messages, as Segment merges them.
    """
    kind = CALLS[call]
    if not isinstance(payload, dict):
        raise Unusable('send a JSON object: one call, or {"batch": [...]}')
    if kind == "batch":
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise Unusable('a batch is {"batch": [message, ...]}')
        shared = payload.get("context")
        found = [
            {**m, "context": {**shared, **(m.get("context") or {})}}
            if isinstance(m, dict) and isinstance(shared, dict)
            else m
            for m in batch
        ]
    else:
        found = [{**payload, "type": kind}]
    for index, message in enumerate(found):
        size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limits.tracking_max_message_bytes:
            raise TooLarge(
                f"message {index} encodes to {size} bytes, more than Segment's limit of "
                f"{limits.tracking_max_message_bytes} per message"
            )
    return found


def write_key(authorization: str | None, body: bytes) -> str | None:
    """The write key: Basic auth's username (the SDKs), a bearer API key, or the body's
    `writeKey` (analytics.js)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized(
                "the Basic credentials are not base64 of `writekey:`", headers=BASIC_CHALLENGE
            ) from exc
        return decoded.partition(":")[0] or None
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # the parser says what is wrong with it, after authentication
    key = payload.get("writeKey") if isinstance(payload, dict) else None
    return key if isinstance(key, str) and key else None


def write_key_principal(
    authenticator: Authenticator, authorization: str | None, body: bytes
) -> Principal:
    """Who sends with this write key: a key of the API-key file holding `events:write`."""
    if authenticator.keys is None:
        return ANONYMOUS  # development: no key file, loopback only
    key = write_key(authorization, body)
    principal = authenticator.keys.principal_for(key) if key else None
    if principal is None:
        REFUSED.labels("401").inc()
        raise Unauthorized(
            "unknown write key"
            if key
            else "send the write key as HTTP Basic auth (the key as "
            "username, empty password) or as `writeKey` in the body",
            headers=BASIC_CHALLENGE,
        )
    if not principal.allows(EVENTS_WRITE):
        REFUSED.labels("403").inc()
        raise Forbidden(f"the key {principal.name!r} lacks the scope {EVENTS_WRITE}")
    return principal
