"""API keys with scopes, and the FastAPI security dependency every service's routes declare.

Teams with an identity provider can also send OAuth2 bearer JWTs (LEADROUTER_JWT_JWKS_URL):
signature checked against the provider's JWKS, expiry, issuer and audience, scopes from the
`scope` (space-separated) or `scp` (list) claim, the principal named `jwt:<sub>`.

A key file line is `name:sha256-hex-of-key:scope,scope`; keys themselves are never stored.
Lines from before scopes existed (`name:sha256hex`) are keys for POST /v1/events, so they
carry `events:write`. The key's name is who acted (audit trail) and, for ingest, the source
its events are published under. Comparisons are constant-time; nothing here logs a key.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Request, Security
from fastapi.security import HTTPBearer, SecurityScopes
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import Counter

from shared.errors import Forbidden, Unauthorized
from shared.scopes import ADMIN as ADMIN
from shared.scopes import EVENTS_WRITE as EVENTS_WRITE
from shared.scopes import FEEDBACK_WRITE as FEEDBACK_WRITE
from shared.scopes import HANDOFFS_READ as HANDOFFS_READ
from shared.scopes import LEADS_READ as LEADS_READ
from shared.scopes import REPS_WRITE as REPS_WRITE
from shared.scopes import SCOPES as SCOPES

log = logging.getLogger(__name__)

REFUSED = Counter(
    "leadrouter_http_auth_refused_total",
    "API requests refused by the credential check: 401 (no or unknown credential) or 403 "
    "(the credential lacks the scope)",
    ["status"],
)
KEY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
LEGACY_SCOPES = frozenset({EVENTS_WRITE})
# Keys verified once are remembered (most recently used first out of room): a key file of
# hundreds of keys is scanned once per key, not once per request.
VERIFIED_KEYS_REMEMBERED = 1024


def hash_api_key(key: str) -> str:
    """The sha256 hex digest stored for an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's name and its scopes (`admin` implies every scope)."""

    name: str
    scopes: frozenset[str]
    anonymous: bool = False

    def allows(self, scope: str) -> bool:
        """Whether this principal holds `scope`."""
        return ADMIN in self.scopes or scope in self.scopes


# The development principal when no key file is configured (loopback only, said at start-up).
ANONYMOUS = Principal("anonymous", frozenset({ADMIN}), anonymous=True)


def key_file_line(name: str, key: str, scopes: list[str]) -> str:
    """The line of LEADROUTER_API_KEYS_FILE that gives `key` the name and scopes."""
    if not KEY_NAME.match(name):
        raise ValueError(f"key name {name!r}: use lower-case letters, digits, - and _")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes {unknown or scopes}: choose from {', '.join(SCOPES)}")
    return f"{name}:{hash_api_key(key)}:{','.join(sorted(set(scopes)))}"


def new_key() -> str:
    """A new random API key (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKeys:
    """The principals of the key file, by the sha256 digest of their key."""

    by_hash: dict[str, Principal] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "ApiKeys":
        """Read `name:sha256hex[:scope,...]` lines; blank lines and # comments are skipped."""
        keys: dict[str, Principal] = {}
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, rest = line.partition(":")
            digest, _, scope_text = rest.partition(":")
            scopes = frozenset(s.strip() for s in scope_text.split(",") if s.strip())
            unknown = sorted(scopes - set(SCOPES))
            if not KEY_NAME.match(name) or len(digest) != 64 or unknown:
                raise ValueError(
                    f"{path}:{number}: expected name:sha256hex:scope,scope "
                    f"(scopes: {', '.join(SCOPES)})" + (f"; unknown {unknown}" if unknown else "")
                )
            keys[digest.lower()] = Principal(name, scopes or LEGACY_SCOPES)
        return cls(keys)

    # Presented key -> principal for keys already verified, by a keyed hash whose secret lives
    # only in this process: how long a look-up takes says nothing about the stored digests.
    _verified: OrderedDict[bytes, Principal] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )
    _cache_secret: bytes = field(
        default_factory=lambda: secrets.token_bytes(32), compare=False, repr=False
    )

    def principal_for(self, key: str) -> Principal | None:
        """The principal of a presented key, or None.

        A key seen before is found by its keyed hash; any other is compared with every stored
        digest (constant-time), and remembered only if it is known.
        """
        cache_key = hashlib.blake2b(key.encode(), key=self._cache_secret).digest()
        found = self._verified.get(cache_key)
        if found is not None:
            self._verified.move_to_end(cache_key)
            return found
        digest = hash_api_key(key)
        for known, principal in self.by_hash.items():
            if hmac.compare_digest(known, digest):
                found = principal
        if found is not None:
            self._verified[cache_key] = found
            if len(self._verified) > VERIFIED_KEYS_REMEMBERED:
                self._verified.popitem(last=False)
        return found


JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class JwtVerifier:
    """Checks an identity provider's JWTs against its published keys (JWKS, cached)."""

    def __init__(self, jwks_url: str, issuer: str | None, audience: str | None) -> None:
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)
        self.issuer = issuer
        self.audience = audience

    def principal(self, token: str) -> Principal:
        """The token's principal (`jwt:<sub>`, its known scopes), or Unauthorized."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=JWT_ALGORITHMS,  # never "none" nor HMAC with a public key
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                f"the bearer token is not valid: {exc}", headers={"WWW-Authenticate": "Bearer"}
            ) from exc
        granted = claims.get("scope") or claims.get("scp") or []
        scopes = granted.split() if isinstance(granted, str) else list(granted)
        return Principal(f"jwt:{claims['sub']}", frozenset(s for s in scopes if s in SCOPES))


def looks_like_jwt(bearer: str) -> bool:
    """A JWT has three dot-separated parts; our API keys have no dots."""
    return bearer.count(".") == 2


@dataclass(frozen=True)
class Authenticator:
    """Turns a request's credential into a principal: API keys, JWTs, or open in development."""

    keys: ApiKeys | None
    jwt: JwtVerifier | None = None

    @classmethod
    def from_settings(
        cls,
        api_keys_file: Path | None,
        host: str,
        service: str,
        jwt_verifier: JwtVerifier | None = None,
    ) -> "Authenticator":
        """Load the key file; without keys or JWTs, allow anonymous access only on loopback."""
        if api_keys_file is not None or jwt_verifier is not None:
            keys = ApiKeys.load(api_keys_file) if api_keys_file else ApiKeys()
            log.info("%s: %d API key(s) loaded from the key file", service, len(keys.by_hash))
            if jwt_verifier:
                log.info("%s: bearer JWTs accepted from the configured JWKS", service)
            return cls(keys, jwt_verifier)
        if not _is_loopback(host):
            raise RuntimeError(
                f"{service}: refusing to serve {host} without API keys; set "
                "LEADROUTER_API_KEYS_FILE (see docs/security.md), or bind to 127.0.0.1"
            )
        log.warning(
            "%s: LEADROUTER_API_KEYS_FILE is not set: EVERY REQUEST IS ALLOWED WITH ALL SCOPES "
            "(development only; the server binds to %s and refuses other hosts without keys)",
            service,
            host,
        )
        return cls(None)

    def principal(self, bearer: str | None) -> Principal:
        """Who sends `bearer` (the key or JWT after `Bearer `), or Unauthorized."""
        if self.keys is None:
            return ANONYMOUS
        if bearer and self.jwt and looks_like_jwt(bearer.strip()):
            return self.jwt.principal(bearer.strip())
        if not bearer:
            raise Unauthorized(
                "send Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = self.keys.principal_for(bearer.strip())
        if principal is None:
            raise Unauthorized("unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return principal


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiKeyBearer(HTTPBearer):
    """The security dependency every route declares: the request's principal; 401 without a
    known key (or JWT), 403 when it lacks a scope the route needs.

    An HTTPBearer itself rather than a function depending on one: FastAPI then solves one
    dependency per request instead of a chain of three (a third of ingest's framework CPU per
    request), and the OpenAPI document names the scheme as before.
    """

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        bearer = bearer_of(request.headers.get("authorization"))
        if bearer and authenticator.jwt and looks_like_jwt(bearer):
            # The JWKS may be fetched over the network: not on the event loop.
            return await asyncio.to_thread(admit, authenticator, bearer, security_scopes.scopes)
        return admit(authenticator, bearer, security_scopes.scopes)


def bearer_of(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, else None."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if credentials and scheme.lower() == "bearer" else None


def admit(authenticator: Authenticator, bearer: str | None, scopes: Sequence[str]) -> Principal:
    """The principal of `bearer` if it holds every scope; else Unauthorized (401) or Forbidden
    (403), each counted. Blocks while a JWT's key set is fetched: call JWTs off the loop."""
    try:
        principal = authenticator.principal(bearer)
    except Unauthorized:
        REFUSED.labels("401").inc()
        raise
    missing = [s for s in scopes if not principal.allows(s)]
    if missing:
        REFUSED.labels("403").inc()
        raise Forbidden(f"the key {principal.name!r} lacks the scope {', '.join(missing)}")
    return principal


authorize = ApiKeyBearer(
    scheme_name="apiKey",
    bearerFormat="API key",
    description="Authorization: Bearer <API key>; each operation lists the scopes it needs "
    "(`admin` implies all). Keys and scopes: docs/security.md.",
    auto_error=False,
)


# One annotated type per scope: a handler parameter of this type is the route's security.
EventsWriter = Annotated[Principal, Security(authorize, scopes=[EVENTS_WRITE])]
LeadsReader = Annotated[Principal, Security(authorize, scopes=[LEADS_READ])]
HandoffsReader = Annotated[Principal, Security(authorize, scopes=[HANDOFFS_READ])]
FeedbackWriter = Annotated[Principal, Security(authorize, scopes=[FEEDBACK_WRITE])]
RepsWriter = Annotated[Principal, Security(authorize, scopes=[REPS_WRITE])]
Admin = Annotated[Principal, Security(authorize, scopes=[ADMIN])]
