"""Pure webhook authentication: each platform's signature scheme (API keys: shared/auth.py).

Every comparison is constant-time (hmac.compare_digest); nothing here logs or returns a secret.
"""

import base64
import hashlib
import hmac
from urllib.parse import unquote_to_bytes

# The one 401 of the project: a request that does not prove it comes from who it claims.
from shared.errors import Unauthorized

__all__ = ["Unauthorized"]


def _require(signature: str | None, expected: str) -> None:
    if not signature:
        raise Unauthorized("the signature header is missing")
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise Unauthorized("the signature does not match the body")


# HubSpot decodes these percent-escapes in the URI before signing (signature v3).
_HUBSPOT_DECODED = (
    "%3A",
    "%2F",
    "%3F",
    "%40",
    "%21",
    "%24",
    "%27",
    "%28",
    "%29",
    "%2A",
    "%2C",
    "%3B",
)


def hubspot_signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + uri + body + timestamp)), as HubSpot signs v3."""
    for escape in _HUBSPOT_DECODED:
        uri = uri.replace(escape, unquote_to_bytes(escape).decode())
        uri = uri.replace(escape.lower(), unquote_to_bytes(escape).decode())
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hubspot(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
    max_age_s: int,
) -> None:
    """Check X-HubSpot-Signature-v3 and reject timestamps outside the window as replays."""
    if not timestamp or not timestamp.isdigit():
        raise Unauthorized("X-HubSpot-Request-Timestamp is missing")
    if abs(now_ms - int(timestamp)) > max_age_s * 1000:
        raise Unauthorized("the request timestamp is outside the accepted window (replay?)")
    _require(signature, hubspot_signature_v3(secret, method, uri, body, timestamp))


def mautic_signature(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, raw body)): Mautic's Webhook-Signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_mautic(secret: str, body: bytes, signature: str | None) -> None:
    """Check Mautic's Webhook-Signature header."""
    _require(signature, mautic_signature(secret, body))


def segment_signature(secret: str, body: bytes) -> str:
    """hex(HMAC-SHA1(secret, raw body)): the X-Signature of Segment's webhook destination."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify_segment(secret: str, body: bytes, signature: str | None) -> None:
    """Check Segment's X-Signature header."""
    _require(signature, segment_signature(secret, body))


def verify_token(expected: str, token: str | None) -> None:
    """Check a static shared token (Marketo webhooks carry one in a header)."""
    if not token:
        raise Unauthorized("the X-Leadrouter-Token header is missing")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("wrong token")
