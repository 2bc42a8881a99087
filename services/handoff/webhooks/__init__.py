"""Outbound webhooks for sales tools that do not read Kafka (subscriptions in the playbook).

Wiring in the handoff app: `Webhooks(runtime, playbook)` when building it, `start()` once
the runtime started, `await stop()` before the runtime stops.
"""

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from services.handoff.webhooks.service import DeliveryWorker, WebhookFanOut
from shared.consumer import TransactionalConsumer
from shared.kafka import HANDOFFS, client_options
from shared.playbook import Playbook
from shared.playbook.webhooks import WebhookSubscription
from shared.runtime import Runtime

CONSUMER = "handoff-webhooks"


class WebhookSecretMissing(ValueError):
    """A subscription without a usable signing secret: the service refuses to start."""


def load_secret(subscription: WebhookSubscription, environ: Mapping[str, str]) -> str:
    """The subscription's signing secret from its variable or the file `<variable>_FILE` names."""
    variable = subscription.secret_variable
    secret = environ.get(variable)
    if not secret and environ.get(f"{variable}_FILE"):
        secret = Path(environ[f"{variable}_FILE"]).read_text().strip()
    hint = (
        f"webhook {subscription.name}: set {variable} (or {variable}_FILE) to a Standard "
        "Webhooks secret, whsec_ followed by base64 of 24 to 64 random bytes, e.g. "
        "python -c \"import os,base64;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
    )
    if not secret:
        raise WebhookSecretMissing(hint)
    try:
        Webhook(secret)
    except Exception as exc:
        raise WebhookSecretMissing(f"{hint} (the one given does not decode)") from exc
    return secret


class Webhooks:
    """The webhook consumer and one delivery worker per subscription, on the service's runtime."""

    def __init__(
        self, runtime: Runtime, playbook: Playbook, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.runtime = runtime
        self.subscriptions = list(playbook.webhooks)
        self._secrets = {s.name: load_secret(s, environ) for s in self.subscriptions}
        self.workers: dict[str, DeliveryWorker] = {}
        self.consumer: TransactionalConsumer | None = None
        self._consuming: asyncio.Task[Any] | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        """Start consuming handoff events and delivering them (nothing without subscriptions)."""
        if not self.subscriptions:
            return
        runtime, settings = self.runtime, self.runtime.settings
        # Redirects are not followed: a signed body must not be replayed to another host.
        self._client = httpx.AsyncClient(follow_redirects=False)
        for sub in self.subscriptions:
            worker = DeliveryWorker(sub, self._secrets[sub.name], runtime.sessions, self._client)
            self.workers[sub.name] = worker
            self._tasks.append(runtime.spawn(f"webhook-{sub.name}", worker.run()))
        self.consumer = TransactionalConsumer(
            name=CONSUMER,
            group_id=settings.consumer_group(CONSUMER),
            topics=[settings.topic(HANDOFFS)],
            bootstrap=client_options(settings),
            sessions=runtime.sessions,
            handler=WebhookFanOut(self.subscriptions),
            relay=runtime.service,  # dead letters go out through the service's outbox relay
            on_commit=self._committed,
            batch_max=settings.consumer_batch_max,
            poll_timeout_ms=settings.consumer_poll_timeout_ms,
            max_retries=settings.consumer_max_retries,
        )
        self._consuming = runtime.spawn(f"{CONSUMER}-consumer", self._consume(self.consumer))

    @staticmethod
    async def _consume(consumer: TransactionalConsumer) -> None:
        await consumer.start()
        await consumer.run()

    def _committed(self) -> None:
        self.runtime.committed()
        for worker in self.workers.values():
            worker.wake()

    async def stop(self) -> None:
        """Finish the batch in hand and leave the group; in-flight POSTs are retried later."""
        if self.consumer is None or self._consuming is None:
            return
        self.consumer.request_stop()
        await asyncio.wait([self._consuming], timeout=self.runtime.settings.shutdown_timeout_s / 2)
        tasks = [self._consuming, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.consumer.stop()
        if self._client:
            await self._client.aclose()
