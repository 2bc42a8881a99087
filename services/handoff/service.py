"""The handoff consumer's batch handler: route qualified leads and queue handoff events."""

from collections.abc import Sequence

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.routing import route_lead
from shared import outbox
from shared.consumer import Delivered
from shared.events import (
    HANDOFF_PREFIX,
    LIFECYCLE_PREFIX,
    CloudEvent,
    HandoffData,
    LifecycleData,
    derived_event_id,
)
from shared.playbook import Playbook

RELAY = "handoff"
ROUTED_TRANSITIONS = {"became_mql"}

HANDOFFS = Counter(
    "leadrouter_handoffs_total", "Handoffs created, by team and outcome", ["team", "outcome"]
)


class HandoffHandler:
    """Routes each became-MQL lifecycle event to a rep, in the caller's transaction."""

    def __init__(self, playbook: Playbook, handoffs_topic: str) -> None:
        self.playbook = playbook
        self.handoffs_topic = handoffs_topic
        # Routing rules arrive with the handoff issue; until then every lead goes to the first team.
        self.team = playbook.routing.teams[0].name

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        for delivered in batch:
            event = delivered.event
            if not event.type.startswith(LIFECYCLE_PREFIX):
                raise ValueError(f"handoff does not handle events of type {event.type!r}")
            lifecycle = LifecycleData.model_validate(event.data)
            if lifecycle.transition in ROUTED_TRANSITIONS:
                await self._route(session, event, lifecycle)

    async def _route(self, session: AsyncSession, event: CloudEvent, lead: LifecycleData) -> None:
        candidates = await repository.lock_team(session, self.team)
        decision = route_lead(lead.lead_key, self.team, candidates)
        handoff_id = derived_event_id("handoff", event.id)
        status = "assigned" if decision.rep_id else "queued"
        created = await repository.insert_handoff(
            session,
            handoff_id=handoff_id,
            lead_key=lead.lead_key,
            rep_id=decision.rep_id,
            team=decision.team,
            status=status,
            score=lead.score,
            routing_reason=decision.reason,
            lifecycle_event_id=event.id,
        )
        if not created:
            return  # this lifecycle event was routed already
        if decision.rep_id:
            await repository.record_assignment(session, decision.rep_id)
        rep = next((r for r in candidates if r.rep_id == decision.rep_id), None)
        await outbox.add_event(
            session,
            RELAY,
            self.handoffs_topic,
            CloudEvent(
                id=derived_event_id("handoff", status, handoff_id),
                source="leadrouter/handoff",
                type=HANDOFF_PREFIX + status,
                time=event.time,
                subject=lead.lead_key,
                data=HandoffData(
                    handoff_id=handoff_id,
                    status=status,
                    lead_key=lead.lead_key,
                    rep_id=decision.rep_id,
                    rep_name=rep.name if rep else None,
                    team=decision.team,
                    email=lead.email,
                    attributes=lead.attributes,
                    score=lead.score,
                    stage=lead.stage,
                    explanation=lead.explanation,
                    routing_reason=decision.reason,
                ).model_dump(mode="json"),
            ),
        )
        HANDOFFS.labels(decision.team, status).inc()
