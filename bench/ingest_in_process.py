"""`python -m bench.ingest_in_process`: ingest's CPU per request with no server and no Kafka.

The ASGI apps are driven directly by concurrent in-process clients (no uvicorn, no sockets)
and ingest's publisher is replaced by a no-op, so what is left is the app's own work: the
framework, the security dependency, the door's checks, validation and encoding. Printed next
to the bare endpoint (bench/bare_app.py) driven the same way, each the best of several rounds
of CPU time (`time.process_time()`), which other work on the machine disturbs far less than
throughput. Kafka's part is what `python -m bench --only ingest` adds on top.
"""

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message

HEADERS = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]


def event(n: int, occurred_at: str) -> bytes:
    """The event bench/wrk/events.lua sends."""
    return (
        f'{{"id":"inproc-{n}","identity":{{"email":"lead{n % 5000}@wrk.example"}},'
        f'"attributes":{{"company":"Wrk","company_size":{n % 900}}},"activity":{{"type":'
        f'"page_view","occurred_at":"{occurred_at}","properties":{{"path":"/blog"}}}}}}'
    ).encode()


async def post(app: ASGIApp, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """POST /v1/events through the ASGI app; the response's status."""
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return status


def ingest_app(keys: int) -> tuple[ASGIApp, list[tuple[bytes, bytes]]]:
    """Ingest with a no-op publisher; with `keys` > 0, a key file of that many keys."""
    from services.ingest.app import build_app
    from shared.auth import key_file_line
    from shared.settings import Settings

    options: dict[str, Any] = {"rate_limit_per_s": 1e9, "rate_limit_burst": 10**9}
    headers = list(HEADERS)
    if keys:
        path = Path(tempfile.mkdtemp()) / "keys"
        path.write_text(
            "".join(
                key_file_line(f"k{n}", f"key-{n}", ["events:write"]) + "\n" for n in range(keys)
            )
        )
        options["api_keys_file"] = path
        headers.append((b"authorization", f"Bearer key-{keys // 2}".encode()))
    app = build_app(Settings(**options))

    async def publish(records: object) -> None:
        return None

    app.state.ingest.publisher.publish = publish
    return app, headers


async def cpu_per_request(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], requests: int, clients: int, rounds: int
) -> float:
    """The best round's CPU µs per request, `clients` posting at once."""
    occurred_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    counter = iter(range(10**9))

    async def client(count: int) -> None:
        for _ in range(count):
            status = await post(app, event(next(counter), occurred_at), headers)
            if status != 202:
                raise AssertionError(f"answered {status}, not 202")

    await client(200)  # warm-up: first-call caches, lazily built validators
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
        best = min(best, 1e6 * (time.process_time() - started) / (requests // clients * clients))
    return best


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_in_process", description=__doc__)
    parser.add_argument("--requests", type=int, default=1600, help="per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keys", type=int, default=200, help="keys in the key-file case")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the development warning about a missing key file
    from bench.bare_app import app as bare

    cases: list[tuple[str, ASGIApp, list[tuple[bytes, bytes]]]] = [
        ("bare FastAPI endpoint", bare, HEADERS),
        ("ingest, no key file", *ingest_app(0)),
        (f"ingest, {args.keys} keys", *ingest_app(args.keys)),
    ]
    for name, app, headers in cases:
        us = await cpu_per_request(app, headers, args.requests, args.clients, args.rounds)
        print(f"{name}: {us:.1f} µs CPU per request (best of {args.rounds})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
