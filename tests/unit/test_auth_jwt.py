"""OAuth2 bearer JWTs from an identity provider, with RSA keys and a JWKS made here."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from services.scoring.app import build_app as build_scoring
from shared.auth import JwtVerifier
from shared.errors import Unauthorized
from shared.settings import Settings

ISSUER = "https://idp.example"
AUDIENCE = "leadrouter"


@pytest.fixture(scope="module")
def provider():
    """A signing key, another key nobody published, and a JWKS endpoint with the first."""
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(signing.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    yield {"signing": signing, "stranger": stranger, "url": url}
    server.shutdown()


def token(key, **claims) -> str:
    body = {"sub": "dashboard", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 300}
    return jwt.encode({**body, **claims}, key, algorithm="RS256", headers={"kid": "k1"})


def test_a_valid_token_carries_its_scopes_and_subject(provider):
    verifier = JwtVerifier(provider["url"], ISSUER, AUDIENCE)
    principal = verifier.principal(token(provider["signing"], scope="leads:read unknown:x"))
    assert principal.name == "jwt:dashboard"
    assert principal.scopes == frozenset({"leads:read"})
    listed = verifier.principal(token(provider["signing"], scope=None, scp=["handoffs:read"]))
    assert listed.scopes == frozenset({"handoffs:read"})


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": time.time() - 60},
    ],
)
def test_tokens_for_others_or_expired_are_refused(provider, claims):
    verifier = JwtVerifier(provider["url"], ISSUER, AUDIENCE)
    with pytest.raises(Unauthorized):
        verifier.principal(token(provider["signing"], scope="admin", **claims))


def test_a_token_signed_by_an_unpublished_key_or_unsigned_is_refused(provider):
    verifier = JwtVerifier(provider["url"], ISSUER, AUDIENCE)
    with pytest.raises(Unauthorized):
        verifier.principal(token(provider["stranger"], scope="admin"))
    unsigned = jwt.encode(
        {"sub": "x", "scope": "admin", "exp": time.time() + 60},
        None,
        algorithm="none",
        headers={"kid": "k1"},
    )
    with pytest.raises(Unauthorized):
        verifier.principal(unsigned)


def test_the_api_takes_tokens_with_the_scope_and_refuses_them_without(provider):
    app = build_scoring(
        Settings(
            jwt_jwks_url=provider["url"],
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            host="0.0.0.0",  # JWTs alone are credentials enough to serve off loopback
            database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
            kafka_bootstrap="127.0.0.1:1",
        )
    )
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing started

    def get(bearer: str) -> int:
        return client.get("/v1/leads/x", headers={"authorization": f"Bearer {bearer}"}).status_code

    assert get(token(provider["signing"], scope="handoffs:read")) == 403
    assert get(token(provider["stranger"], scope="leads:read")) == 401
    assert get(token(provider["signing"], scope="leads:read")) not in (401, 403)
    assert client.get("/v1/leads/x").status_code == 401
