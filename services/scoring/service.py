"""The scoring consumer's batch handler: fold events into leads, queue lifecycle events."""

import logging
from collections.abc import Sequence

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import repository
from services.scoring.scoring import LeadState, apply_activity
from shared import outbox
from shared.consumer import Delivered
from shared.events import (
    LEAD_ACTIVITY,
    LIFECYCLE_PREFIX,
    CloudEvent,
    LeadActivityData,
    LifecycleData,
    derived_event_id,
)
from shared.playbook import Playbook

log = logging.getLogger(__name__)

RELAY = "scoring"  # the outbox relay is named after its service

TRANSITIONS = Counter(
    "leadrouter_scoring_transitions_total", "Lifecycle transitions emitted", ["transition"]
)


class UnprocessableEvent(ValueError):
    """An event that decodes as CloudEvents but that scoring cannot use."""


class ScoringHandler:
    """Applies a batch of lead activity events to the leads projection in the caller's tx."""

    def __init__(self, playbook: Playbook, lifecycle_topic: str) -> None:
        self.playbook = playbook
        self.lifecycle_topic = lifecycle_topic

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        activities = [(d.event, _activity(d.event)) for d in batch]
        states = await repository.lock_leads(session, (e.subject for e, _ in activities))
        changed: dict[str, LeadState] = {}
        for event, data in activities:
            state = states.get(event.subject) or LeadState(lead_key=event.subject)
            state, transitions = apply_activity(state, data, self.playbook)
            states[event.subject] = changed[event.subject] = state
            for transition in transitions:
                await outbox.add_event(
                    session,
                    RELAY,
                    self.lifecycle_topic,
                    CloudEvent(
                        id=derived_event_id("lifecycle", transition.name, event.id),
                        source="leadrouter/scoring",
                        type=LIFECYCLE_PREFIX + transition.name,
                        time=data.activity.occurred_at,
                        subject=state.lead_key,
                        data=LifecycleData(
                            transition=transition.name,
                            lead_key=state.lead_key,
                            email=state.email,
                            attributes=state.attributes,
                            stage=transition.stage,
                            previous_stage=transition.previous_stage,
                            score=state.score,
                            explanation=state.explanation(),
                            qualifying_activity_at=data.activity.occurred_at,
                        ).model_dump(mode="json"),
                    ),
                )
                TRANSITIONS.labels(transition.name).inc()
        await repository.save_leads(session, changed.values())


def _activity(event: CloudEvent) -> LeadActivityData:
    if event.type != LEAD_ACTIVITY:
        raise UnprocessableEvent(f"scoring does not handle events of type {event.type!r}")
    return LeadActivityData.model_validate(event.data)
