"""A 405 names every method the path allows (RFC 9110 section 15.5.6), on every path of every
service's OpenAPI document: a path served by several routes (GET and DELETE /v1/leads/{id})
allows them all, not only the first route's."""

import re

import pytest
from fastapi.testclient import TestClient

from services.handoff.app import build_app as build_handoff
from services.ingest.app import build_app as build_ingest
from services.scoring.app import build_app as build_scoring
from shared.settings import Settings

SETTINGS = Settings(
    database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing",
    kafka_bootstrap="127.0.0.1:1",
)
METHODS = ["get", "post", "put", "patch", "delete", "options"]


@pytest.mark.parametrize("build", [build_ingest, build_scoring, build_handoff])
def test_every_405_lists_every_method_of_its_path(build):
    app = build(SETTINGS)
    client = TestClient(app, raise_server_exceptions=False)
    checked = 0
    for path, item in app.openapi()["paths"].items():
        documented = {m.upper() for m in item}
        unused = next(m for m in METHODS if m.upper() not in documented)
        url = re.sub(r"\{\w+\}", "x", path)
        response = client.request(unused, url)
        assert response.status_code == 405, (unused, path, response.text)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert documented <= allowed <= documented | {"HEAD"}, (path, allowed)
        checked += 1
    assert checked >= 4


def test_options_on_a_lead_names_get_and_delete():
    client = TestClient(build_scoring(SETTINGS), raise_server_exceptions=False)
    response = client.options("/v1/leads/email:ana@acme.example")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "DELETE"}
