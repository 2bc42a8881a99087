"""A real HTTP server for webhook tests: records what it receives and answers as told."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from tests.helpers import eventually

HANG = "hang"  # never answer: the sender's timeout fires


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | str


class Receiver:
    """An ASGI app: per path, a plan of answers (status codes or HANG), then `default`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.plans: dict[str, tuple[bytes, list[int | str]]] = {}
        self.always: dict[str, int | str] = {}
        self.url = ""

    def plan(self, path: str, answers: list[int | str], when: bytes = b"") -> None:
        """Answer the next requests on a path whose body contains `when` with these, in turn."""
        self.plans[path] = (when, list(answers))

    def answered(self, path: str, status: int = 200) -> list[Received]:
        """Requests on a path that got this status, in arrival order."""
        return [r for r in self.received if r.path == path and r.status == status]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        when, plan = self.plans.get(path, (b"", []))
        action = plan.pop(0) if plan and when in body else self.always.get(path, 200)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(path, headers, body, action))
        if action == HANG:
            await asyncio.sleep(3600)
        await send({"type": "http.response.start", "status": int(action), "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    """A Receiver served by uvicorn on a free local port for the duration of the block."""
    receiver = Receiver()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            receiver, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # raises what stopped the server
        return server.started

    await eventually(started, 10, "the webhook receiver to listen")
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=5)
        task.cancel()
