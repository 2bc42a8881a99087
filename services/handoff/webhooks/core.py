"""Pure rules of outbound webhooks: who gets an event, when to try again, how it is signed."""

from datetime import datetime

from standardwebhooks import Webhook

from shared.events import HANDOFF_PREFIX, HandoffData
from shared.playbook.webhooks import WebhookSubscription


def matches(subscription: WebhookSubscription, event_type: str, data: HandoffData) -> bool:
    """True when the subscription wants this handoff event (its kind, team and tier filters)."""
    if not event_type.startswith(HANDOFF_PREFIX):
        return False
    if event_type.removeprefix(HANDOFF_PREFIX) not in subscription.events:
        return False
    if subscription.teams is not None and data.team not in subscription.teams:
        return False
    return subscription.tiers is None or data.tier in subscription.tiers


def retry_delay_s(subscription: WebhookSubscription, attempts: int) -> float | None:
    """Seconds to wait after the `attempts`-th failed try; None when it was the last one."""
    schedule = subscription.retry_schedule_s
    return schedule[attempts - 1] if attempts <= len(schedule) else None


def signed_headers(
    signer: Webhook, message_id: str, now: datetime, body: bytes, content_type: str
) -> dict[str, str]:
    """The Standard Webhooks headers: the same id on every retry, so receivers can dedupe."""
    return {
        "content-type": content_type,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(message_id, now, body.decode()),
    }
