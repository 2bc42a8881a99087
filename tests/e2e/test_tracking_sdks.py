"""The official tracking SDKs against the running services, as a team that runs them would:
segment-analytics-python, rudder-sdk-python, @segment/analytics-node and analytics.js
(@segment/analytics-next, served from this machine) in Chromium.

In each, a visitor views /pricing anonymously, then identifies herself: her earlier page views
count, she becomes an MQL and is handed off to a rep. The JavaScript SDKs are installed by
`make sdk-clients` (npm ci in tests/sdk/), the Python ones by the dev extra.
"""

import asyncio
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.processes import Service
from shared.auth import EVENTS_WRITE, HANDOFFS_READ, LEADS_READ, key_file_line
from shared.kafka import HANDOFFS
from shared.settings import REPO_ROOT, Settings
from tests.helpers import eventually, read_topic

pytestmark = pytest.mark.integration

SDK_DIR = REPO_ROOT / "tests" / "sdk"
NODE_MODULES = SDK_DIR / "node_modules"
WRITE_KEY = "wk-" + uuid.uuid4().hex
READ_KEY = "rk-" + uuid.uuid4().hex
CHROMIUM = os.environ.get("LEADROUTER_CHROMIUM", "/usr/bin/chromium")
HAS_CHROMIUM = Path(CHROMIUM).exists()
# The example playbook: 20 (250 employees) + 15 (a VP) = 35 from who she is, short of the MQL
# threshold of 50; her three anonymous pricing views (10 each) are what qualify her.
VISITOR_TRAITS = {"title": "VP Marketing", "company": {"name": "Acme", "employee_count": 250}}


async def start_stack(services: dict[str, Service], tmp_path: Path) -> dict[str, Service]:
    """The three services with a key file: a write key for the website and a reader's key."""
    keys = tmp_path / "api-keys"
    keys.write_text(
        key_file_line("website", WRITE_KEY, [EVENTS_WRITE])
        + "\n"
        + key_file_line("reader", READ_KEY, [LEADS_READ, HANDOFFS_READ])
        + "\n"
    )
    for service in services.values():
        service.env["LEADROUTER_API_KEYS_FILE"] = str(keys)
    await asyncio.gather(*(s.start() for s in services.values()))
    return services


@pytest.fixture
async def stack(services: dict[str, Service], tmp_path: Path) -> dict[str, Service]:
    """The three services, started with the key file."""
    return await start_stack(services, tmp_path)


async def qualified_and_handed_off(
    settings: Settings, stack: dict[str, Service], email: str
) -> dict[str, Any]:
    """The lead as scoring's API shows it once she is an MQL, after her handoff was published."""
    headers = {"authorization": f"Bearer {READ_KEY}"}
    async with httpx.AsyncClient(headers=headers) as client:

        async def mql() -> dict[str, Any] | None:
            response = await client.get(f"{stack['scoring'].url}/v1/leads/email:{email}")
            lead = response.json() if response.status_code == 200 else None
            return lead if lead and lead["stage"] == "mql" else None

        lead = await eventually(mql, 60, f"{email} to become an MQL")
    handoffs = await read_topic(
        settings,
        settings.topic(HANDOFFS),
        1,
        match=lambda r: r.key == f"email:{email}".encode(),
    )
    assert [r for r in handoffs if r.key == f"email:{email}".encode()], "no handoff"
    return lead


def assert_pricing_views_counted(lead: dict[str, Any], views: int, anonymous_id: str) -> None:
    pricing = [a for a in lead["activities"] if a["rule"] == "pricing_page_view"]
    assert len(pricing) == views, lead["activities"]
    assert f"segment_anonymous:{anonymous_id}" in lead["identities"]
    assert lead["score"] >= 50


async def test_python_sdks_segment_and_rudderstack(settings, stack):
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    errors: list[Any] = []
    # The reproduction: segment-analytics-python pointed at ingest (sync mode raises on
    # any answer but 200). RudderStack's SDK gzips its batches by default.
    segment = SegmentClient(
        WRITE_KEY,
        host=stack["ingest"].url,
        sync_mode=True,
        on_error=lambda error, batch: errors.append(error),
    )
    rudder = RudderClient(
        WRITE_KEY,
        host=stack["ingest"].url,
        sync_mode=True,
        gzip=True,
        on_error=lambda error, batch: errors.append(error),
    )
    for client, email, anonymous in (
        (segment, "ana@acme.example", "anon-ana"),
        (rudder, "bo@acme.example", "anon-bo"),
    ):
        for n in range(3):
            client.page(
                anonymous_id=anonymous,
                name="Pricing",
                properties={"path": "/pricing", "url": f"https://acme.example/pricing?n={n}"},
            )
        client.identify(anonymous_id=anonymous, traits={"email": email, **VISITOR_TRAITS})
    assert not errors
    for email, anonymous in (("ana@acme.example", "anon-ana"), ("bo@acme.example", "anon-bo")):
        lead = await qualified_and_handed_off(settings, stack, email)
        assert_pricing_views_counted(lead, 3, anonymous)

    # A wrong write key is refused: the SDK raises in sync mode instead of losing events quietly.
    from segment.analytics.request import APIError

    wrong = SegmentClient("not-a-key", host=stack["ingest"].url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as refused:
        wrong.track(user_id="u-1", event="Signed Up")
    assert refused.value.status == 401


def node() -> str:
    found = shutil.which("node")
    if not found or not (NODE_MODULES / "@segment").exists():
        pytest.fail("the JavaScript SDKs are not installed: run `make sdk-clients`")
    return found


async def test_node_sdk(settings, stack):
    email, anonymous = "cy@acme.example", "anon-cy"
    pages = [
        ["page", {"anonymousId": anonymous, "name": "Pricing", "properties": {"path": "/pricing"}}]
        for _ in range(3)
    ]
    identify = [
        "identify",
        {"anonymousId": anonymous, "traits": {"email": email, **VISITOR_TRAITS}},
    ]
    run = await asyncio.to_thread(
        subprocess.run,
        [
            node(),
            str(SDK_DIR / "send_node.mjs"),
            json.dumps(
                {"host": stack["ingest"].url, "writeKey": WRITE_KEY, "calls": [*pages, identify]}
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    statuses = [json.loads(line)["status"] for line in run.stdout.splitlines()]
    assert statuses and set(statuses) == {200}, run.stdout
    lead = await qualified_and_handed_off(settings, stack, email)
    assert_pricing_views_counted(lead, 3, anonymous)


class Site(SimpleHTTPRequestHandler):
    """The marketing site: its page at /pricing and /demo, analytics.js from node_modules, and
    the settings Segment's CDN would serve, naming ingest as the API host."""

    ingest_host = ""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path in ("/pricing", "/demo"):
            self._send((SDK_DIR / "site.html").read_bytes(), "text/html")
        elif path == "/tracking-config.js":
            # `_cdn` before analytics.js loads: its chunks come from this site, not a CDN.
            config = {"writeKey": WRITE_KEY}
            script = (
                "window.analytics = {_cdn: location.origin}; "
                f"window.TRACKING = {json.dumps(config)};"
            )
            self._send(script.encode(), "application/javascript")
        elif path == f"/v1/projects/{WRITE_KEY}/settings":
            settings = {
                "integrations": {
                    "Segment.io": {
                        "apiKey": WRITE_KEY,
                        "apiHost": f"{self.ingest_host}/v1",
                        "protocol": "http",
                    }
                },
                "plan": {"track": {"__default": {"enabled": True}}},
            }
            self._send(json.dumps(settings).encode(), "application/json")
        elif path.startswith("/analytics-next/bundles/"):
            self.path = path.removeprefix("/analytics-next/bundles/")
            super().do_GET()
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[tuple[str, type[Site]]]:
    """The site's URL and its handler class (ingest's host is set once ingest runs)."""
    bundles = NODE_MODULES / "@segment" / "analytics-next" / "dist" / "umd"
    if not (bundles / "index.js").exists():
        pytest.fail("analytics.js is not installed: run `make sdk-clients`")
    handler = type("TestSite", (Site,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(bundles)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


async def test_analytics_js_in_chromium(settings, services, site, tmp_path):
    from playwright.async_api import async_playwright, expect

    site_url, handler = site
    # The site and ingest are two origins (two ports): the browser asks ingest for CORS.
    services["ingest"].env["LEADROUTER_TRACKING_CORS_ORIGINS"] = site_url
    stack = await start_stack(services, tmp_path)
    handler.ingest_host = stack["ingest"].url.removeprefix("http://")

    if not HAS_CHROMIUM:
        pytest.fail("no /usr/bin/chromium: run `make infra-up` (deploy/infra/chromium.sh up)")
    email = "di@acme.example"
    elsewhere: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = await browser.new_page()

        async def only_this_machine(route: Any) -> None:
            if route.request.url.startswith("http://127.0.0.1:"):
                await route.continue_()
            else:  # a CDN or anything else outside: refused and remembered
                elsewhere.append(route.request.url)
                await route.abort()

        await page.route("**/*", only_this_machine)
        # The ingest origin differs from the site's (another port): CORS is exercised.
        for _ in range(3):
            async with page.expect_response(lambda r: r.url.endswith("/v1/p")) as sent:
                await page.goto(f"{site_url}/pricing")
            assert (await sent.value).status == 200
        anonymous_id = await page.evaluate("window.analytics.user().then(u => u.anonymousId())")
        await page.fill("input[name=email]", email)
        await page.fill("input[name=title]", VISITOR_TRAITS["title"])
        await page.fill("input[name=company]", "Acme")
        await page.fill("input[name=employees]", "250")
        async with page.expect_response(lambda r: r.url.endswith("/v1/i")) as identified:
            await page.click("button[type=submit]")
        assert (await identified.value).status == 200
        await expect(page.locator("#status")).to_have_text("Thanks, we will call you")
        await browser.close()
    assert not elsewhere, f"analytics.js reached outside this machine: {elsewhere}"
    lead = await qualified_and_handed_off(settings, stack, email)
    assert_pricing_views_counted(lead, 3, anonymous_id)
