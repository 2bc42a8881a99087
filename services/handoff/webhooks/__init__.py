"""Outbound webhooks for sales tools that do not read Kafka (subscriptions in the playbook).

Wiring in the handoff app: `Webhooks(runtime, playbook)` before the runtime starts; the
runtime then starts, upkeeps and stops the consumer and the delivery workers with its own.
"""

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import httpx
from prometheus_client import Counter
from standardwebhooks import Webhook

from services.handoff.webhooks import repository
from services.handoff.webhooks.service import DeliveryWorker, WebhookFanOut
from shared.kafka import HANDOFFS
from shared.playbook import Playbook
from shared.playbook.webhooks import WebhookSubscription
from shared.runtime import Runtime
from shared.settings import HandoffSettings

log = logging.getLogger(__name__)

CONSUMER = "handoff-webhooks"

RETENTION_DELETED = Counter(
    "leadrouter_webhook_deliveries_deleted_total",
    "Finished webhook deliveries deleted by the retention rule "
    "(LEADROUTER_WEBHOOK_DELIVERY_RETENTION_S)",
)


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
    """Outbound webhooks on the service's runtime: a subscription of their own (group
    `handoff-webhooks`) that gets the runtime's upkeep, one delivery worker per playbook
    subscription, and the deliveries' retention rule."""

    def __init__(
        self, runtime: Runtime, playbook: Playbook, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.retention_s = (
            settings.webhook_delivery_retention_s
            if isinstance(settings, HandoffSettings)
            else HandoffSettings.model_fields["webhook_delivery_retention_s"].default
        )
        self.subscriptions = list(playbook.webhooks)
        self._secrets = {s.name: load_secret(s, environ) for s in self.subscriptions}
        self.workers: dict[str, DeliveryWorker] = {}
        if not self.subscriptions:
            return
        # Redirects are not followed: a signed body must not be replayed to another host.
        self._client = httpx.AsyncClient(follow_redirects=False)
        for sub in self.subscriptions:
            worker = DeliveryWorker(sub, self._secrets[sub.name], runtime.sessions, self._client)
            self.workers[sub.name] = worker
            runtime.run_worker(f"webhook-{sub.name}", worker.run)
        runtime.consume(
            [settings.topic(HANDOFFS)],
            settings.consumer_group(CONSUMER),
            WebhookFanOut(self.subscriptions),
            name=CONSUMER,
            on_commit=self._wake_workers,
            retention=[self.delete_expired],
        )
        runtime.on_stop(self._client.aclose)

    def _wake_workers(self) -> None:
        for worker in self.workers.values():
            worker.wake()

    async def delete_expired(self, batch: int = 10_000) -> int:
        """Delete deliveries finished longer ago than the retention; returns how many."""
        retention_s = self.retention_s
        total = 0
        while True:
            async with self.runtime.sessions() as session, session.begin():
                deleted = await repository.delete_finished(session, retention_s, batch)
            total += deleted
            if deleted < batch:
                break
        if total:
            RETENTION_DELETED.inc(total)
            log.info("webhooks: deleted %d deliveries finished over %gs ago", total, retention_s)
        return total
