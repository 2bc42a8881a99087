"""A lead rejected for a reason whose policy is `revisit` (bad timing) went back to nurture;
at the revisit date it is routed again, unless it qualified again before and has a newer
handoff already."""

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import policy_repository, repository
from services.handoff.flows.routing import RoutingFlow
from services.handoff.status import HandoffStatus
from shared.events import (
    LIFECYCLE_PREFIX,
    CloudEvent,
    LifecycleData,
    Touches,
    derived_event_id,
)
from shared.timers import Timer
from shared.vocabulary import LifecycleTransition

log = logging.getLogger(__name__)


class RevisitFlow(RoutingFlow):
    """Route a rejected lead again at the date its reject reason's policy set."""

    async def on_revisit(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """The revisit date came: route the lead again, as the handoff last knew it."""
        handoff = await repository.lock_handoff(session, timer.key)
        if handoff is None or handoff.status != HandoffStatus.REJECTED:
            return
        if handoff.recycle_policy != "revisit" or handoff.created_at is None:
            return
        if await policy_repository.has_newer_handoff(session, handoff.lead_key, handoff.created_at):
            return  # it qualified again before the date and was routed then
        lead = LifecycleData(
            # Routed as the MQL it was (the contract has no revisit transition): the
            # synthetic event below names the revisit and gives the new handoff its id.
            transition=LifecycleTransition.BECAME_MQL,
            lead_key=handoff.lead_key,
            email=handoff.email,
            attributes=dict(handoff.attributes or {}),
            stage="mql",
            score=handoff.score,
            fit_score=handoff.fit_score,
            tier=handoff.tier,
            explanation=list(handoff.explanation or []),  # type: ignore[arg-type]
            touches=Touches.model_validate(handoff.touches) if handoff.touches else None,
        )
        event = CloudEvent(
            id=derived_event_id("revisit", handoff.handoff_id),
            source="leadrouter/handoff",
            type=LIFECYCLE_PREFIX + "revisit",
            time=now,
            subject=handoff.lead_key,
            data=lead.model_dump(mode="json"),
        )
        log.info("revisit: routing again", extra={"handoff_id": handoff.handoff_id})
        await self.route(session, event, lead, now, why=f"revisit after {handoff.reason}")
        self._gauges_stale = True
