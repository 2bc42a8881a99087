"""Hand-made CloudEvents for tests and benchmarks: lead activities, sales outcomes, and a lead
that just became an MQL."""

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.events import HANDOFF_PREFIX, LEAD_ACTIVITY, CloudEvent, LifecycleData


def became_mql(
    email: str,
    tier: str = "hot",
    attributes: dict[str, Any] | None = None,
    event_id: str | None = None,
    source: str = "tests",
) -> CloudEvent:
    """`leadrouter.lifecycle.became_mql` for `email:<email>`, score 90, qualified now."""
    now = datetime.now(UTC)
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type="leadrouter.lifecycle.became_mql",
        time=now,
        subject=f"email:{email}",
        data=LifecycleData(
            transition="became_mql",
            lead_key=f"email:{email}",
            email=email,
            attributes=attributes or {},
            stage="mql",
            score=90,
            tier=tier,
            qualifying_activity_at=now,
        ).model_dump(mode="json"),
    )


def lead_activity(
    subject: str,
    kind: str,
    at: datetime,
    email: str | None = None,
    *,
    external_ids: dict[str, str] | None = None,
    attributes: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    event_id: str | None = None,
    event_type: str = LEAD_ACTIVITY,
    source: str = "tests",
) -> CloudEvent:
    """A lead activity of `kind` at `at`, as ingest publishes it. An erasure request has the
    same shape with `event_type=ERASURE_REQUESTED`."""
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event_type,
        time=at,
        subject=subject,
        data={
            "identity": {"email": email, "external_ids": external_ids or {}},
            "attributes": attributes or {},
            "activity": {
                "type": kind,
                "occurred_at": at.isoformat(),
                "properties": properties or {},
            },
        },
    )


# The handoff's status after the event kinds that are not a status of their own (a recycle is
# a rejection whose reason sends the lead back to marketing).
_STATUS_AFTER = {
    "recycled": "rejected",
    "sla_warning": "assigned",
    "sla_breached": "assigned",
    "reassigned": "assigned",
}


def sales_outcome(
    lead_key: str,
    status: str,
    at: datetime,
    *,
    converted_to: str | None = None,
    reason: str | None = None,
    handoff_id: str = "h-1",
    event_id: str | None = None,
) -> CloudEvent:
    """`leadrouter.handoff.<status>` for `lead_key` from rep-ana, as the handoff service
    publishes it: what scoring reads back as the sales outcome."""
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source="leadrouter/handoff",
        type=HANDOFF_PREFIX + status,
        time=at,
        subject=lead_key,
        data={
            "handoff_id": handoff_id,
            "status": _STATUS_AFTER.get(status, status),
            "lead_key": lead_key,
            "rep_id": "rep-ana",
            "score": 60,
            "stage": "mql",
            "routing_reason": "test",
            "reason": reason,
            "converted_to": converted_to,
        },
    )
