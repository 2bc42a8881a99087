"""Every board route's scopes, generated from the routes themselves (the board is outside the
OpenAPI documents, so the API's generated scope tests do not see it): each protected route
refuses no key (401) and a key without each of its scopes (403), and serves a key with them."""

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.handoff.app import build_app
from services.handoff.board import endpoints as board
from services.handoff.board.access import BoardAccess
from shared.auth import ADMIN, LEADS_READ, SCOPES, key_file_line
from shared.settings import REPO_ROOT, Settings

# Shells and assets hold no data: a page loads its fragments with the viewer's key.
PUBLIC = {
    "/board",
    "/board/reps",
    "/board/funnel",
    "/board/playbook",
    "/board/campaigns",
    "/board/goals",
    "/board/report",
    "/board/leads/{lead_id:path}",
    "/board/static/{name}",
}
STREAMS = {"/board/events"}  # server-sent events
EVERY = sorted(s for s in SCOPES if s != ADMIN)


def _key(scopes: list[str]) -> str:
    return "key-" + "-".join(sorted(scopes)).replace(":", "_")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("keys") / "api-keys"
    lines = [key_file_line("admin", _key([ADMIN]), [ADMIN])]
    for scope in EVERY:
        others = [s for s in EVERY if s != scope]
        lines.append(key_file_line(f"without-{scope.replace(':', '-')}", _key(others), others))
    lines.append(key_file_line("everything", _key(EVERY), EVERY))
    path.write_text("\n".join(lines) + "\n")
    return build_app(
        Settings(
            api_keys_file=path,
            # Nothing answers here: a request past the scope check fails on its first query.
            database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
            kafka_bootstrap="127.0.0.1:1",
        )
    )


def board_routes(app: Any) -> dict[str, tuple[str, ...] | None]:
    """Each board route's path and the scopes its BoardAccess requires (None: public)."""
    found: dict[str, tuple[str, ...] | None] = {}
    for route in board.router.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/board"):
            access = [
                d.call for d in route.dependant.dependencies if isinstance(d.call, BoardAccess)
            ]
            found[route.path] = access[0].scopes if access else None
    return found


def test_every_board_route_is_protected_or_holds_no_data(app):
    routes = board_routes(app)
    assert len(routes) >= 11
    assert {path for path, scopes in routes.items() if scopes is None} == PUBLIC
    # As scoring's GET /v1/leads/{id}: a lead's score and transitions need leads:read.
    assert LEADS_READ in (routes["/board/fragments/leads/{lead_id:path}"] or ())


def test_each_board_scope_is_needed_and_enough(app):
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no database
    for path, scopes in board_routes(app).items():
        if scopes is None:
            continue
        url = re.sub(r"\{(\w+)(:path)?\}", "email:ana@acme.example", path)
        none = client.get(url)
        assert none.status_code == 401, (path, none.text)
        for scope in scopes:
            lacking = client.get(
                url, headers={"authorization": f"Bearer {_key([s for s in EVERY if s != scope])}"}
            )
            assert lacking.status_code == 403 and scope in lacking.text, (path, scope)
        for holder in (EVERY, [ADMIN]):
            if path in STREAMS:  # never ends: the scope check alone, as the route runs it
                access = next(
                    d.call
                    for r in board.router.routes
                    if isinstance(r, APIRoute) and r.path == path
                    for d in r.dependant.dependencies
                    if isinstance(d.call, BoardAccess)
                )
                request = SimpleNamespace(
                    app=app, headers={"authorization": f"Bearer {_key(holder)}"}
                )
                assert asyncio.run(access(request)).scopes  # type: ignore[arg-type]
                continue
            allowed = client.get(url, headers={"authorization": f"Bearer {_key(holder)}"})
            assert allowed.status_code not in (401, 403), (path, holder)


def test_the_development_sales_key_cannot_read_a_lead_on_the_board():
    app = build_app(
        Settings(
            api_keys_file=REPO_ROOT / "deploy" / "api-keys.example",
            database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
            kafka_bootstrap="127.0.0.1:1",
        )
    )
    client = TestClient(app, raise_server_exceptions=False)
    url = "/board/fragments/leads/email:ana@acme.example"
    sales = client.get(url, headers={"authorization": "Bearer dev-sales-key"})
    assert sales.status_code == 403 and LEADS_READ in sales.text
    # the same key still sees the board's handoffs
    board = client.get("/board/fragments/sla", headers={"authorization": "Bearer dev-sales-key"})
    assert board.status_code not in (401, 403)
    admin = client.get(url, headers={"authorization": "Bearer dev-admin-key"})
    assert admin.status_code not in (401, 403)
