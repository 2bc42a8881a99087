"""API keys with scopes, and every operation of the three services behind them.

The 401/403 checks are generated from the OpenAPI documents: an operation added without a
scope fails `test_every_operation_declares_its_security`, and each declared scope is tried
with a key that has it (not refused), one that lacks it (403) and none (401).
"""

import io
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services import keys
from services.handoff.app import build_app as build_handoff
from services.ingest.app import build_app as build_ingest
from services.scoring.app import build_app as build_scoring
from shared.auth import (
    ADMIN,
    EVENTS_WRITE,
    REFUSED,
    SCOPES,
    VERIFIED_KEYS_REMEMBERED,
    ApiKeys,
    Authenticator,
    Principal,
    hash_api_key,
    key_file_line,
)
from shared.errors import Unauthorized
from shared.settings import REPO_ROOT, Settings

# Probes, metrics, and the published event contract (public like /openapi.json: topic names
# and schemas, no data).
UNSECURED = {"/healthz", "/readyz", "/metrics", "/asyncapi.json"}
NOT_ADMIN = sorted(set(SCOPES) - {ADMIN})


def test_key_file_lines_carry_a_name_and_scopes(tmp_path):
    path = tmp_path / "keys"
    path.write_text(
        "# a comment\n"
        + key_file_line("crm", "k-crm", ["handoffs:read", "feedback:write"])
        + "\n\n"
        + f"web:{hash_api_key('k-web')}\n"  # a line from before scopes: a sender of events
    )
    loaded = ApiKeys.load(path)
    assert loaded.principal_for("k-crm") == Principal(
        "crm", frozenset({"handoffs:read", "feedback:write"})
    )
    assert loaded.principal_for("k-web") == Principal("web", frozenset({"events:write"}))
    assert loaded.principal_for("k-other") is None
    assert "k-crm" not in path.read_text()


def test_verified_keys_are_remembered_within_a_bound_and_unknown_ones_never(tmp_path):
    path = tmp_path / "keys"
    path.write_text(
        "\n".join(key_file_line(f"k{n}", f"key-{n}", ["events:write"]) for n in range(3)) + "\n"
    )
    loaded = ApiKeys.load(path)
    for _attempt in range(3):  # the first look-up scans the file, the others hit the cache
        assert loaded.principal_for("key-1") == Principal("k1", frozenset({"events:write"}))
        assert loaded.principal_for("key-1 ") is None  # not the same key: never remembered
    assert len(loaded._verified) == 1
    # Many distinct known keys: the memory stays bounded and each still resolves.
    many = ApiKeys({hash_api_key(f"m-{n}"): Principal(f"m{n}", frozenset()) for n in range(1100)})
    for n in range(1100):
        assert many.principal_for(f"m-{n}") == Principal(f"m{n}", frozenset())
    assert len(many._verified) == VERIFIED_KEYS_REMEMBERED
    assert many.principal_for("m-0") == Principal("m0", frozenset())  # evicted, found again


@pytest.mark.parametrize("line", ["web:abc", "Web:" + "0" * 64, "web:" + "0" * 64 + ":leads:write"])
def test_a_malformed_key_file_names_the_line(tmp_path, line):
    path = tmp_path / "keys"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match="keys:1"):
        ApiKeys.load(path)


def test_admin_implies_every_scope_and_others_only_their_own():
    admin = Principal("ops", frozenset({ADMIN}))
    crm = Principal("crm", frozenset({"handoffs:read"}))
    assert all(admin.allows(s) for s in SCOPES)
    assert [s for s in SCOPES if crm.allows(s)] == ["handoffs:read"]


def test_without_a_key_file_only_a_loopback_server_is_open(tmp_path):
    assert Authenticator.from_settings(None, "127.0.0.1", "scoring").principal(None).anonymous
    with pytest.raises(RuntimeError, match="LEADROUTER_API_KEYS_FILE"):
        Authenticator.from_settings(None, "0.0.0.0", "scoring")
    path = tmp_path / "keys"
    path.write_text(key_file_line("ops", "k", [ADMIN]) + "\n")
    authenticator = Authenticator.from_settings(path, "0.0.0.0", "scoring")
    assert authenticator.principal("k").name == "ops"
    for bearer in (None, "", "wrong"):
        with pytest.raises(Unauthorized):
            authenticator.principal(bearer)


def test_the_key_command_prints_a_new_key_once_and_its_line(capsys):
    from services.cli import main

    assert (
        main(["keys", "new", "crm", "--scope", "handoffs:read", "--scope", "feedback:write"]) == 0
    )
    out, err = capsys.readouterr()
    key = err.rsplit(" ", 1)[-1].strip()
    assert out.strip() == key_file_line("crm", key, ["feedback:write", "handoffs:read"])
    assert key not in out  # stdout (the line for the key file) never holds the key


def test_the_key_command_hashes_a_key_from_stdin_for_a_sender(monkeypatch, capsys):
    from services.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("dev-key\n"))
    assert main(["keys", "new", "web", "--scope", "events:write", "--stdin"]) == 0
    out, err = capsys.readouterr()
    example = (REPO_ROOT / "deploy" / "api-keys.example").read_text()
    assert out.strip() in example.splitlines()  # the dev key `make run` uses
    assert err == ""


def test_the_key_command_refuses_names_and_scopes_it_does_not_know(capsys):
    parser = __import__("argparse").ArgumentParser()
    keys.add_arguments(parser)
    assert keys.run(parser.parse_args(["Web Forms", "--scope", "admin"])) == 1
    assert keys.run(parser.parse_args(["web"])) == 1  # no scope given
    assert "lower-case" in capsys.readouterr().err


def test_the_example_key_file_loads_with_a_key_per_role():
    loaded = ApiKeys.load(REPO_ROOT / "deploy" / "api-keys.example")
    assert loaded.principal_for("dev-key") == Principal("web", frozenset({"events:write"}))
    assert loaded.principal_for("dev-admin-key") == Principal("ops", frozenset({ADMIN}))
    crm = loaded.principal_for("dev-sales-key")
    assert crm and crm.allows("feedback:write") and not crm.allows("leads:read")


# --- generated from the OpenAPI documents ---------------------------------------------------


def _key_for(scopes: list[str]) -> str:
    return "key-" + ("-".join(sorted(scopes)).replace(":", "_") or "none")


@pytest.fixture(scope="module")
def apps(tmp_path_factory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("keys") / "api-keys"
    lines = []
    for scope in SCOPES:
        lines.append(key_file_line(f"only-{scope.replace(':', '-')}", _key_for([scope]), [scope]))
        others = [s for s in NOT_ADMIN if s != scope]
        lines.append(key_file_line(f"all-but-{scope.replace(':', '-')}", _key_for(others), others))
    path.write_text("\n".join(lines) + "\n")
    settings = Settings(
        api_keys_file=path,
        # Nothing answers here: a request that gets past the security dependency fails on
        # its first query instead of touching a shared database.
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
        kafka_bootstrap="127.0.0.1:1",
        segment_shared_secret="s",
    )
    return {
        "ingest": build_ingest(settings),
        "scoring": build_scoring(settings),
        "handoff": build_handoff(settings),
    }


def _operations(apps: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for service, app in apps.items():
        for path, item in app.openapi()["paths"].items():
            for method, operation in item.items():
                found.append((service, method, path, operation))
    return found


def _url(path: str, operation: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        for parameter in operation.get("parameters", []):
            if parameter["name"] == match.group(1):
                schema = parameter.get("schema", {})
                if "enum" in schema:
                    return str(schema["enum"][0])
                if "pattern" in schema:
                    return "segment"  # the webhook sources
        return "x"

    return re.sub(r"\{(\w+)\}", value, path)


def test_every_operation_declares_its_security(apps):
    operations = _operations(apps)
    assert len(operations) >= 12
    for service, method, path, operation in operations:
        if path in UNSECURED:
            assert "security" not in operation, path
            continue
        requirements = operation.get("security")
        assert requirements, f"{service} {method.upper()} {path} declares no security"
        for requirement in requirements:
            for scheme, scopes in requirement.items():
                if scheme == "apiKey":
                    assert scopes and set(scopes) <= set(SCOPES), (service, path, scopes)
                else:
                    assert scheme in ("webhookSignature", "writeKey"), (service, path, scheme)


def _cases(apps: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    cases = []
    for service, method, path, operation in _operations(apps):
        for requirement in operation.get("security", []):
            if "apiKey" in requirement:
                cases.append((service, method, path, requirement["apiKey"]))
    return cases


def test_each_scope_is_needed_and_enough_on_every_operation(apps):
    refused_before = {s: REFUSED.labels(s)._value.get() for s in ("401", "403")}
    cases = _cases(apps)
    assert {scope for *_, scopes in cases for scope in scopes} == set(SCOPES)
    for service, method, path, scopes in cases:
        operation = apps[service].openapi()["paths"][path][method]
        url = _url(path, operation)
        body = {"json": {}} if "requestBody" in operation else {}
        client = TestClient(apps[service], raise_server_exceptions=False)  # no lifespan
        (scope,) = scopes
        none = client.request(method, url, **body)
        assert none.status_code == 401, (service, method, path, none.text)
        assert none.headers["content-type"] == "application/problem+json"
        wrong = client.request(method, url, headers={"authorization": "Bearer not-a-key"}, **body)
        assert wrong.status_code == 401, (service, method, path)
        lacking = [s for s in NOT_ADMIN if s != scope]
        refused = client.request(
            method, url, headers={"authorization": f"Bearer {_key_for(lacking)}"}, **body
        )
        assert refused.status_code == 403, (service, method, path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert scope in refused.json()["detail"]
        for holder in {scope, ADMIN}:
            allowed = client.request(
                method, url, headers={"authorization": f"Bearer {_key_for([holder])}"}, **body
            )
            assert allowed.status_code not in (401, 403), (service, method, path, holder)
    # Each case: two 401s (no key, unknown key) and one 403, counted for the dashboards.
    assert REFUSED.labels("401")._value.get() - refused_before["401"] == 2 * len(cases)
    assert REFUSED.labels("403")._value.get() - refused_before["403"] == len(cases)


def test_each_tracking_call_needs_a_write_key_with_events_write(apps):
    """The Tracking API's operations (write keys as Basic auth, as the SDKs send them)."""
    import base64

    def basic(key: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    operations = [
        (method, path)
        for service, method, path, operation in _operations(apps)
        if any("writeKey" in r for r in operation.get("security", []))
    ]
    assert {p for _, p in operations} == {
        f"/v1/{c}" for c in ("identify", "track", "page", "screen", "group", "alias", "batch")
    }
    client = TestClient(apps["ingest"], raise_server_exceptions=False)
    lacking = [s for s in NOT_ADMIN if s != EVENTS_WRITE]
    for method, path in operations:

        def send(method: str = method, path: str = path, **h: str) -> Any:
            return client.request(method, path, json={"batch": []}, headers=h)

        assert send().status_code == 401, path
        assert send(**basic("not-a-key")).status_code == 401, path
        refused = send(**basic(_key_for(lacking)))
        assert refused.status_code == 403 and EVENTS_WRITE in refused.json()["detail"], path
        for holder in (EVENTS_WRITE, ADMIN):
            assert send(**basic(_key_for([holder]))).status_code not in (401, 403), path


def test_webhooks_are_refused_without_the_platform_signature(apps):
    client = TestClient(apps["ingest"], raise_server_exceptions=False)
    response = client.post("/v1/webhooks/segment", json={"type": "track"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
