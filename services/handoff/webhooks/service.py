"""Outbound webhooks: fan handoff events out to delivery rows, and deliver them per subscription.

A consumer of its own (group `<ns>-handoff-webhooks`) writes one delivery row per matching
subscription in the transaction that stores its offsets, so the handoff flow never waits on
a subscriber and no event is lost or queued twice across restarts. One worker per
subscription then claims due rows (SKIP LOCKED, so instances share the work) and POSTs them:
a slow or dead endpoint holds up only its own subscription.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from services.handoff.webhooks import repository
from services.handoff.webhooks.core import matches, retry_delay_s, signed_headers
from services.handoff.webhooks.formats import FORMATS
from shared.consumer import Delivered
from shared.events import HANDOFF_PREFIX, CloudEvent, HandoffData
from shared.playbook.webhooks import WebhookSubscription
from shared.wakeup import sleep_until_woken

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0

DELIVERIES = Counter(
    "leadrouter_webhook_deliveries_total",
    "Webhook tries by outcome: delivered, failed (tried again later), dead (gave up)",
    ["subscription", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "leadrouter_webhook_request_duration_seconds",
    "Time a subscriber took to answer one webhook POST",
    ["subscription"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_SECONDS = Histogram(
    "leadrouter_webhook_delivery_latency_seconds",
    "From the event reaching leadrouter's webhook queue to the subscriber's 2xx",
    ["subscription"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
BACKLOG = Gauge(
    "leadrouter_webhook_backlog_rows", "Webhook deliveries not yet done", ["subscription"]
)
BACKLOG_AGE = Gauge(
    "leadrouter_webhook_backlog_oldest_age_seconds",
    "Age of the oldest webhook delivery not yet done (0 when none)",
    ["subscription"],
)


class WebhookFanOut:
    """The consumer's batch handler: one delivery row per event and matching subscription."""

    def __init__(self, subscriptions: Sequence[WebhookSubscription]) -> None:
        self.subscriptions = list(subscriptions)

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        rows = []
        for delivered in batch:
            event = delivered.event
            if not event.type.startswith(HANDOFF_PREFIX):
                continue
            data = HandoffData.model_validate(event.data)
            rows += [
                {
                    "subscription": sub.name,
                    "event_id": event.id,
                    "event_type": event.type,
                    "lead_key": event.subject,
                    "event": event.to_bytes(),
                }
                for sub in self.subscriptions
                if matches(sub, event.type, data)
            ]
        await repository.add(session, rows)


class DeliveryWorker:
    """Delivers one subscription's events: signed POSTs, retries with backoff, then dead."""

    def __init__(
        self,
        subscription: WebhookSubscription,
        secret: str,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        *,
        batch_max: int = 20,
        idle_poll_s: float = 1.0,
    ) -> None:
        self.subscription = subscription
        self._signer = Webhook(secret)
        self._format = FORMATS[subscription.format]
        self._sessions = sessions
        self._client = client
        self._batch_max = batch_max
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        for outcome in ("delivered", "failed", "dead"):
            DELIVERIES.labels(subscription.name, outcome)

    def wake(self) -> None:
        """New deliveries were committed."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; a failure of the database is logged and retried."""
        while True:
            try:
                claimed = await self.deliver_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: delivery round failed; retrying", self.subscription.name)
                claimed = 0
                await asyncio.sleep(1.0)
            if claimed < self._batch_max:
                await sleep_until_woken(self._wake, self._idle_poll_s)
                self._wake.clear()

    async def deliver_once(self) -> int:
        """Claim due deliveries (one per lead), POST them concurrently, record the outcomes."""
        name = self.subscription.name
        # Longer than a POST may take, so a row is never sent twice at once; after a crash
        # its row is due again when the lease ends.
        lease_s = self.subscription.timeout_s + LEASE_MARGIN_S
        async with self._sessions() as session, session.begin():
            claimed = await repository.claim(session, name, self._batch_max, lease_s)
        errors = await asyncio.gather(*(self._post(d) for d in claimed))
        async with self._sessions() as session, session.begin():
            for delivery, error in zip(claimed, errors, strict=True):
                await self._record(session, delivery, error)
            rows, age_s = await repository.backlog(session, name)
        BACKLOG.labels(name).set(rows)
        BACKLOG_AGE.labels(name).set(age_s)
        return len(claimed)

    async def _post(self, delivery: repository.Delivery) -> str | None:
        """POST one delivery; None on a 2xx, else what went wrong (never the body or secret)."""
        try:
            event = CloudEvent.from_bytes(delivery.event)
            body = self._format.render(event)
        except ValueError as exc:  # cannot happen for rows the fan-out wrote; never loop on it
            return f"cannot render as {self.subscription.format}: {exc}"[:300]
        headers = signed_headers(
            self._signer, event.id, datetime.now(UTC), body, self._format.CONTENT_TYPE
        )
        started = time.perf_counter()
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange (the lease).
            async with asyncio.timeout(self.subscription.timeout_s):
                response = await self._client.post(
                    str(self.subscription.url),
                    content=body,
                    headers=headers,
                    timeout=self.subscription.timeout_s,
                )
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {self.subscription.timeout_s:g}s"
        except httpx.HTTPError as exc:
            return f"{exc.__class__.__name__}: {exc}"[:300]
        finally:
            REQUEST_SECONDS.labels(self.subscription.name).observe(time.perf_counter() - started)
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

    async def _record(
        self, session: AsyncSession, delivery: repository.Delivery, error: str | None
    ) -> None:
        name = self.subscription.name
        if error is None:
            await repository.finish(session, delivery.id, "delivered", None)
            DELIVERIES.labels(name, "delivered").inc()
            DELIVERY_SECONDS.labels(name).observe(delivery.age_s)
            return
        delay_s = retry_delay_s(self.subscription, delivery.attempts)
        if delay_s is None:
            await repository.finish(session, delivery.id, "dead", error)
            DELIVERIES.labels(name, "dead").inc()
            log.error(
                "webhook %s: gave up on event %s after %d tries: %s",
                name,
                delivery.event_id,
                delivery.attempts,
                error,
                extra={"event_id": delivery.event_id},
            )
            return
        await repository.retry_later(session, delivery.id, delay_s, error)
        DELIVERIES.labels(name, "failed").inc()
        log.warning(
            "webhook %s: try %d of event %s failed (%s); next in %gs",
            name,
            delivery.attempts,
            delivery.event_id,
            error,
            delay_s,
            extra={"event_id": delivery.event_id},
        )
