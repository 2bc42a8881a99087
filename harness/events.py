"""Hand-made lifecycle events for tests and benchmarks: a lead that just became an MQL."""

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.events import CloudEvent, LifecycleData


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
