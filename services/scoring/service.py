"""The scoring handlers: fold activities and sales outcomes into leads, fire decay timers."""

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import erasure, repository
from services.scoring.core import (
    LeadState,
    Transition,
    apply_activity,
    apply_sales_outcome,
    earns_points,
    next_score_change,
    retier,
)
from services.scoring.identity import identity_aliases, merged_lead
from services.scoring.known_leads import DEFAULT_MAX_LEADS, KnownLeads
from services.scoring.metrics import ACTIVITIES, SCORES, TRANSITIONS, labelled
from services.scoring.names import RELAY as RELAY
from services.scoring.names import RETIER as RETIER
from services.scoring.names import UnprocessableEvent
from services.scoring.touches import LeadTouches, add_touch, merge_touches, qualify
from shared import audit, outbox, timers
from shared.consumer import Delivered
from shared.db import db_now
from shared.events import (
    ERASURE_REQUESTED,
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    LIFECYCLE_PREFIX,
    SALES_OUTCOMES,
    CloudEvent,
    HandoffData,
    LeadActivityData,
    Touch,
    derived_event_id,
)
from shared.playbook import Playbook
from shared.timers import Timer
from shared.vocabulary import LifecycleTransition, Stage

log = logging.getLogger(__name__)


class ScoringHandler:
    """Applies a batch of events to the leads projection in the caller's transaction."""

    def __init__(
        self,
        playbook: Playbook,
        lead_events_topic: str,
        lifecycle_topic: str,
        relay: str = RELAY,
        known_leads_max: int = DEFAULT_MAX_LEADS,
    ) -> None:
        self.playbook = playbook
        self.lead_events_topic = lead_events_topic
        self.lifecycle_topic = lifecycle_topic
        # Activity types a rule names, counted by name in the metrics (the rest as other).
        self.known_activities = {rule.activity for rule in playbook.scoring.behaviour}
        self.relay = relay  # a replay names an outbox nobody publishes
        # The leads this handler saved, so a returning lead is not read back (known_leads).
        self.known = KnownLeads(known_leads_max)

    async def __call__(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        # An erasure request splits the batch: what came before it is erased with the lead,
        # what comes after starts afresh (in partition order, so per person in event order).
        segment: list[Delivered] = []
        for delivered in batch:
            if delivered.event.type != ERASURE_REQUESTED:
                segment.append(delivered)
                continue
            await self._apply(session, segment)
            segment = []
            event = delivered.event
            data = LeadActivityData.model_validate(event.data)
            names = identity_aliases(event.subject, data)
            await self.erase(session, names, actor=f"kafka:{event.source}", cause=event.id)
        await self._apply(session, segment)

    async def erase(
        self, session: AsyncSession, names: Sequence[str], actor: str, cause: str
    ) -> list[CloudEvent]:
        """Erase the leads these names point at, publish `erased` for each, and audit it."""
        events = await erasure.erase(
            session,
            names,
            relay=self.relay,
            lifecycle_topic=self.lifecycle_topic,
            timer_kind=RETIER,
            cause=cause,
            now=await db_now(session),
        )
        if events:
            # The trail names the erasure by its event ids, never by the person.
            await audit.record(
                session, actor, "lead.erase", cause, {"events": [e.id for e in events]}
            )
            TRANSITIONS.labels("erased").inc(len(events))
        return events

    async def _apply(self, session: AsyncSession, batch: Sequence[Delivered]) -> None:
        work: list[tuple[Delivered, list[str], LeadActivityData | HandoffData]] = []
        for delivered in batch:
            event = delivered.event
            if event.type == LEAD_ACTIVITY:
                activity = LeadActivityData.model_validate(event.data)
                work.append((delivered, identity_aliases(event.subject, activity), activity))
            elif event.type in SALES_OUTCOMES:
                handoff = HandoffData.model_validate(event.data)
                work.append((delivered, [handoff.lead_key], handoff))
            elif not event.type.startswith(HANDOFF_PREFIX):
                raise UnprocessableEvent(f"scoring does not handle events of type {event.type!r}")
        if not work:
            return
        bindings = await repository.claim_aliases(
            session, (a for _, names, _ in work for a in names)
        )
        stored = dict(bindings)
        work = await self._without_erased_outcomes(session, work, bindings)
        if not work:
            return
        states = await self._lock_leads(session, set(bindings.values()))
        stored_leads = set(states)
        changed: dict[str, LeadState] = {}
        lifecycle: list[CloudEvent] = []
        absorbed: set[str] = set()
        journal = TouchJournal()
        for delivered, names, data in work:
            event = delivered.event
            merged_keys: list[str] = []
            touch: Touch | None = None
            keys = {bindings[a] for a in names if a in bindings}
            if isinstance(data, HandoffData):
                # Unknown when a replay reads the handoffs topic ahead of the lead's activities:
                # the outcome starts the lead, and its activities join it by alias later.
                key = min(keys) if keys else data.lead_key
                state = states.get(key) or LeadState(lead_key=key)
                outcome = SALES_OUTCOMES[event.type]
                state, transitions = apply_sales_outcome(
                    state, outcome, data.converted_to, event.time, self.playbook
                )
                labelled(
                    ACTIVITIES, f"sales_{outcome}", "applied" if transitions else "unchanged"
                ).inc()
            else:
                state = merged_lead(states, keys, names, self.playbook)
                if len(keys) > 1 or state.lead_key not in keys:  # a merge, or a new key
                    await self._absorb(session, keys, state.lead_key, bindings, absorbed)
                for key in keys:
                    del states[key]
                for gone in absorbed:
                    changed.pop(gone, None)
                merged_keys = sorted(keys - {state.lead_key})
                journal.merged(state.lead_key, merged_keys)
                touch = data.touch
                state, transitions = apply_activity(
                    state, data, event.id, self.playbook, delivered.received_at
                )
                if merged_keys:  # downstream counts the person once from here on
                    at = state.last_activity_at or event.time
                    transitions.insert(
                        0, Transition(LifecycleTransition.MERGED, state.stage, state.stage, at)
                    )
                kind = data.activity.type
                labelled(
                    ACTIVITIES,
                    kind if kind in self.known_activities else "other",
                    "merged"
                    if len(keys) > 1
                    else ("scored" if earns_points(data, self.playbook) else "no_points"),
                ).inc()
            for name in names:
                bindings[name] = state.lead_key
            states[state.lead_key] = changed[state.lead_key] = state
            events = self._lifecycle(state, transitions, cause=event.id, merged=merged_keys)
            journal.step(state.lead_key, touch, event.time, transitions, events)
            lifecycle += events
        # Only aliases that are new or now point elsewhere (a merge): the rest are stored already.
        await repository.bind_aliases(
            session,
            {a: k for a, k in bindings.items() if k in changed and stored.get(a) != k},
        )
        # Before the merged-away leads go: their touches join the lead they merged into.
        await journal.apply(session)
        await repository.delete_leads(session, absorbed - set(changed))
        self.known.forget(absorbed)
        # Remembered before the commit: if it rolls back, these versions are never any row's.
        self.known.saved(await repository.save_leads(session, changed.values()), changed)
        await timers.cancel(session, RETIER, *(absorbed - set(changed)))
        await self._schedule(session, list(changed.values()), stored_leads)
        await outbox.add_events(session, self.relay, self.lifecycle_topic, lifecycle)
        for state in changed.values():
            SCORES.observe(state.score.total)

    async def _lock_leads(self, session: AsyncSession, keys: set[str]) -> dict[str, LeadState]:
        """The stored state of these leads, locked: from `known` where it holds the row's
        version, else read (and only then decoded) from the row."""
        locked = await repository.lock_leads_unless_known(session, keys, self.known.versions(keys))
        self.known.forget(keys - locked.keys())  # erased or merged away by another path
        states: dict[str, LeadState] = {}
        stale: list[str] = []
        for key, (version, state) in locked.items():
            if state is None:
                state = self.known.state(key, version)
                if state is None:  # replaced here by another partition's batch meanwhile
                    stale.append(key)
                    continue
            states[key] = state
        if stale:
            states.update(await repository.lock_leads(session, stale))
        return states

    async def _without_erased_outcomes(
        self,
        session: AsyncSession,
        work: list[tuple[Delivered, list[str], LeadActivityData | HandoffData]],
        bindings: dict[str, str],
    ) -> list[tuple[Delivered, list[str], LeadActivityData | HandoffData]]:
        """Drop sales outcomes of erased leads: they carry no identity to start a lead with."""
        unknown = {
            data.lead_key
            for _, names, data in work
            if isinstance(data, HandoffData) and not any(n in bindings for n in names)
        }
        gone = await erasure.erased_among(session, unknown)
        return [
            item
            for item in work
            if not (isinstance(item[2], HandoffData) and item[2].lead_key in gone)
            or any(n in bindings for n in item[1])
        ]

    async def _absorb(
        self,
        session: AsyncSession,
        keys: set[str],
        canonical: str,
        bindings: dict[str, str],
        absorbed: set[str],
    ) -> None:
        """Leads `keys` turned out to be lead `canonical` (`identity.merged_lead`): the others
        are absorbed, their aliases follow it."""
        for old in keys - {canonical}:
            absorbed.add(old)
            stored = await repository.aliases_of(session, [old])
            for alias in [*stored, *(a for a, k in bindings.items() if k == old)]:
                bindings[alias] = canonical
        if len(keys) > 1:
            log.debug("merged leads", extra={"lead_id": canonical})

    def _lifecycle(
        self,
        state: LeadState,
        transitions: list[Transition],
        cause: str,
        merged: Sequence[str] = (),
    ) -> list[CloudEvent]:
        """The lifecycle events of a lead's transitions (ids derive from their cause)."""
        if not transitions:  # most events: no explanation to build
            return []
        events = []
        for transition in transitions:
            data = lifecycle_data(state, transition, merged)
            events.append(
                CloudEvent.model_construct(
                    id=derived_event_id("lifecycle", transition.name, state.lead_key, cause),
                    source="leadrouter/scoring",
                    type=LIFECYCLE_PREFIX + transition.name,
                    time=transition.at,
                    subject=state.lead_key,
                    data=data,
                )
            )
            labelled(TRANSITIONS, transition.name).inc()
        return events

    async def _schedule(
        self, session: AsyncSession, states: list[LeadState], stored: Collection[str]
    ) -> None:
        """One decay timer per lead at its next band crossing, set in two statements.

        Only leads that were `stored` before this transaction can have a timer to cancel (every
        path that removes a lead cancels its timer), so a batch of new leads skips that one.
        """
        due = {s.lead_key: next_score_change(s, self.playbook) for s in states}
        await timers.schedule_many(session, RETIER, {k: at for k, at in due.items() if at})
        await timers.cancel(
            session, RETIER, *(k for k, at in due.items() if at is None and k in stored)
        )

    async def on_retier(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """A decay timer fired: re-score the lead now and publish what changed."""
        states = await repository.lock_leads(session, [timer.key])
        if timer.key not in states:
            return  # merged into another lead meanwhile
        state, transitions = retier(states[timer.key], self.playbook, now)
        events = self._lifecycle(state, transitions, cause=f"retier:{timer.due_at.isoformat()}")
        await outbox.add_events(session, self.relay, self.lifecycle_topic, events)
        await repository.save_leads(session, [state])
        SCORES.observe(state.score.total)
        await self._schedule(session, [state], [state.lead_key])


def lifecycle_data(
    state: LeadState,
    transition: Transition,
    merged: Sequence[str] = (),
) -> dict[str, Any]:
    """A transition's LifecycleData in its JSON form, built as LifecycleData.model_dump(
    mode="json") would give it (same keys, order and values: tests/unit/test_scoring_events.py
    checks it against the contract model), without validating a state the core built: that
    was a tenth of scoring's CPU on a batch of new leads."""
    score = state.score
    return {
        "transition": LifecycleTransition(transition.name).value,
        "lead_key": state.lead_key,
        "email": state.email,
        "attributes": dict(state.attributes),
        "stage": Stage(transition.stage).value,
        "score": int(score.total),
        "fit_score": float(score.fit),
        "behaviour_score": float(score.behaviour),
        "tier": state.tier,
        "previous_tier": transition.previous_tier,
        "previous_stage": Stage(transition.previous_stage).value,
        "explanation": [
            {"rule": rule, "points": float(points)} for rule, points in score.contributions
        ],
        "qualifying_activity_at": json_time(transition.at),
        "merged_keys": list(merged),
        "touches": None,  # filled in by the batch's TouchJournal
        "signal": {"type": transition.signal, "at": json_time(transition.at)}
        if transition.signal
        else None,
    }


def json_time(at: datetime) -> str:
    """A time as pydantic's JSON mode writes it (ISO 8601, UTC as Z)."""
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TouchJournal:
    """A batch's touches and merges in event order, folded into the leads' first, qualifying
    and last touches after the batch (services/scoring/touches.py); each lifecycle event gets
    its lead's touches as they stood then. Touches are read and written only for leads whose
    event carried a touch or changed their stage: most events do neither."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []
        self.needed: set[str] = set()

    def merged(self, kept: str, gone: Sequence[str]) -> None:
        """Leads `gone` turned out to be `kept`."""
        if gone:
            self.entries.append(("merge", (kept, list(gone))))

    def step(
        self,
        key: str,
        touch: Touch | None,
        at: datetime,
        transitions: Sequence[Transition],
        events: list[CloudEvent],
    ) -> None:
        """An event of lead `key` at `at`, with its touch and the lifecycle events it made."""
        if touch is None and not events:
            return
        qualified = any(t.name == LifecycleTransition.BECAME_MQL for t in transitions)
        self.entries.append(("step", (key, touch, at, qualified, events)))
        self.needed.add(key)

    async def apply(self, session: AsyncSession) -> None:
        """Fold the batch into the stored touches, fill the lifecycle events, save."""
        if not self.needed:
            return
        keys = set(self.needed)
        for kind, entry in self.entries:
            if kind == "merge":
                keys.update([entry[0], *entry[1]])
        current = await repository.get_touches(session, keys)
        touched: set[str] = set()
        for kind, entry in self.entries:
            if kind == "merge":
                kept, gone = entry
                others = [current.pop(k, LeadTouches()) for k in gone]
                current[kept] = merge_touches(current.get(kept, LeadTouches()), *others)
                touched.add(kept)
                continue
            key, touch, at, qualified, events = entry
            before = current.get(key, LeadTouches())
            after = add_touch(before, touch, at)
            if qualified:
                after = qualify(after)
            if after != before:
                current[key] = after
                touched.add(key)
            for event in events:
                event.data["touches"] = None if after.empty else after.as_dict()
        await repository.save_touches(session, {k: current[k] for k in touched if k in current})
