"""The leads projection rebuilt in memory from the topics' records: the pure core of the replay.

`Rebuild.apply` takes the records one at a time, in an order that keeps each partition's
order, and does to the in-memory projection exactly what the live handler
(services/scoring/service.py) does to the stored one, event by event: the same identity
resolution and merges (services/scoring/identity.py), the same cores (`apply_activity` with the
record's Kafka time, `apply_sales_outcome`), each lead's first, qualifying and last touch
(services/scoring/touches.py, folded as the live handler's TouchJournal folds them: merges,
the touch at the event's time, the qualifying touch at becoming an MQL), erasure requests with
their tombstones, event ids counted once, and a record that does not decode or that the
handler would refuse skipped without its id (live dead-letters it, in a transaction that
claims no id). No I/O, no clock.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.scoring.core import (
    CLOCK_SKEW_TOLERANCE,
    LeadState,
    Transition,
    apply_activity_at,
    apply_sales_outcome,
    from_us,
    to_us,
)
from services.scoring.erasure import lead_hash
from services.scoring.identity import LeadsInMemory, identity_aliases
from services.scoring.names import UnprocessableEvent
from services.scoring.touches import LeadTouches, add_touch, merge_touches, qualify
from shared.events import (
    ERASURE_REQUESTED,
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    SALES_OUTCOMES,
    CloudEvent,
    HandoffData,
    LeadActivityData,
    Touch,
    derived_event_id,
)
from shared.playbook import Playbook
from shared.vocabulary import LifecycleTransition

_SKEW_US = CLOCK_SKEW_TOLERANCE // timedelta(microseconds=1)
# Live takes a record's time as datetime.fromtimestamp(ms / 1000): a double holds whole
# milliseconds to the microsecond below 2**33 seconds (the year 2242), so there it is ms * 1000.
_EXACT_MS = 2**33 * 1000


def received_us(timestamp_ms: int | None) -> int | None:
    """A record's Kafka time as live's received_at, in microseconds (None: it has none)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    if timestamp_ms < _EXACT_MS:
        return timestamp_ms * 1000
    return to_us(datetime.fromtimestamp(timestamp_ms / 1000, UTC))


_NO_TOUCHES = LeadTouches()


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One Kafka record of the history; `event` is None when it does not decode."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the record's Kafka time (ingest's send time for lead events)
    # The same time in microseconds since the epoch, as live's received_at: None when the
    # record has no time. A datetime is made only for the rare activity dated ahead of it.
    received_us: int | None
    event: CloudEvent | None
    activity: LeadActivityData | None = None  # a lead activity's data, validated at decoding


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure request that erased leads: what the audit trail records for it."""

    actor: str
    cause: str
    event_ids: tuple[str, ...]
    lead_keys: tuple[str, ...]


# No generated repr: asyncio formats the replay task's result (a Rebuild) on its way out,
# and spelling out millions of objects took ~0.4 s.
@dataclass(repr=False)
class Rebuild:
    """The leads projection, the processed ids and the erasures of a replay, in memory."""

    playbook: Playbook
    # Tombstones (sha256 of erased keys) stored before the replay began: replay keeps them.
    tombstones: set[str] = field(default_factory=set)
    leads: LeadsInMemory = field(default_factory=LeadsInMemory)
    # Lead key -> its touches, for the leads that have any (most events carry none).
    touches: dict[str, LeadTouches] = field(default_factory=dict)
    # Event id -> (topic, partition, offset) of the record that first carried it.
    processed: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    erasures: list[Erasure] = field(default_factory=list)
    dead_letters: int = 0

    def apply(self, record: ReplayRecord) -> None:
        """Fold one record into the projection as the live consumer and handler would."""
        event = record.event
        if event is None:
            self.dead_letters += 1
            return
        if event.id in self.processed:
            return  # a duplicate: live claims each id once and skips the rest
        try:
            self._apply(event, record.activity, record.received_us)
        except Exception:
            # Live retries the record alone, then dead-letters it; its transaction rolls back,
            # so it leaves no id and no change. Every step below validates before it mutates.
            self.dead_letters += 1
            return
        self.processed[event.id] = (record.topic, record.partition, record.offset)

    def _apply(
        self,
        event: CloudEvent,
        activity: LeadActivityData | None,
        received_us: int | None,
    ) -> None:
        if event.type == LEAD_ACTIVITY:
            activity = activity or LeadActivityData.model_validate(event.data)
            self._activity(
                event.id,
                identity_aliases(event.subject, activity),
                activity,
                received_us,
                event.time,
            )
        elif event.type in SALES_OUTCOMES:
            handoff = HandoffData.model_validate(event.data)
            self._sales_outcome(SALES_OUTCOMES[event.type], handoff, event.time)
        elif event.type == ERASURE_REQUESTED:
            request = LeadActivityData.model_validate(event.data)
            self._erase(identity_aliases(event.subject, request), f"kafka:{event.source}", event.id)
        elif not event.type.startswith(HANDOFF_PREFIX):
            raise UnprocessableEvent(f"scoring does not handle events of type {event.type!r}")

    def _activity(
        self,
        event_id: str,
        names: list[str],
        data: LeadActivityData,
        received_us: int | None,
        event_time: datetime,
    ) -> None:
        state, absorbed = self.leads.resolve(names, self.playbook)
        # `apply_activity` (its clock-skew rule, effective_time) in microseconds, which the
        # record's time already is: no datetime arithmetic per record.
        at = data.activity.occurred_at
        at_us = to_us(at)
        if received_us is not None and at_us > received_us + _SKEW_US:
            at_us = received_us + _SKEW_US
            at = from_us(at_us)
        state, transitions = apply_activity_at(state, data, event_id, self.playbook, at, at_us)
        key = state.lead_key
        merged = [k for k in absorbed if k != key]
        touches = self._touches_after(key, merged, data.touch, event_time, transitions)
        self.leads.keep(state, names, absorbed)
        for gone in merged:
            self.touches.pop(gone, None)
        if touches is not None:
            self.touches[key] = touches

    def _sales_outcome(self, outcome: str, data: HandoffData, at: datetime) -> None:
        name = data.lead_key
        key = self.leads.bindings.get(name)
        if key is None and lead_hash(name) in self.tombstones:
            return  # an erased lead's outcome carries no identity to start a lead with
        key = key or name
        state = self.leads.states.get(key) or LeadState(lead_key=key)
        state, transitions = apply_sales_outcome(
            state, outcome, data.converted_to, at, self.playbook
        )
        touches = self._touches_after(key, [], None, at, transitions)
        self.leads.keep(state, [name])
        if touches is not None:
            self.touches[key] = touches

    def _touches_after(
        self,
        key: str,
        merged: list[str],
        touch: Touch | None,
        at: datetime,
        transitions: list[Transition],
    ) -> LeadTouches | None:
        """The lead's touches after an event at `at` (the event's time, as live takes it) that
        merged `merged` into it and carried `touch`; None when they did not change. Reads only:
        the caller keeps the result once the event's other steps passed."""
        qualified = bool(transitions) and any(
            t.name == LifecycleTransition.BECAME_MQL for t in transitions
        )
        if touch is None and not merged and not qualified:
            return None  # most events
        current = self.touches
        before = current.get(key, _NO_TOUCHES)
        after = before
        if merged:
            after = merge_touches(before, *(current.get(k, _NO_TOUCHES) for k in sorted(merged)))
        after = add_touch(after, touch, at)
        if qualified:
            after = qualify(after)
        return None if after == before else after

    def _erase(self, names: list[str], actor: str, cause: str) -> None:
        bindings = self.leads.bindings
        candidates = {*names, *(bindings[n] for n in names if n in bindings)}
        keys = sorted(k for k in candidates if k in self.leads.states)
        if not keys:
            return
        for key in keys:
            self.leads.forget(key)
            self.touches.pop(key, None)
            self.tombstones.add(lead_hash(key))
        ids = tuple(derived_event_id("lifecycle", "erased", k, cause) for k in keys)
        self.erasures.append(Erasure(actor, cause, ids, tuple(keys)))
