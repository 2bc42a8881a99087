"""Pure handoff lifecycle: the Handoff, its statuses, SLA deadlines, and what feedback and
breaches do to it. No I/O and no clock reads: every decision takes `now`."""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.handoff.routing import RepLoad, RoutingDecision, route_lead
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.playbook import Playbook
from shared.playbook.handoff import WEEKDAYS, WorkingHours
from shared.vocabulary import ConversionStage, FeedbackAction, HandoffStatus

# Statuses that hold one of the rep's capacity slots.
OPEN_STATUSES = frozenset({HandoffStatus.ASSIGNED, HandoffStatus.ACCEPTED, HandoffStatus.CONTACTED})
# Statuses in which the lead waits in a queue with no rep.
WAITING_STATUSES = frozenset({HandoffStatus.QUEUED, HandoffStatus.ESCALATED})


CONVERSION_ORDER = list(ConversionStage)


# action -> (statuses it may follow, status it leads to); convert may repeat to move forward.
FEEDBACK_MOVES: dict[FeedbackAction, tuple[frozenset[HandoffStatus], HandoffStatus]] = {
    FeedbackAction.ACCEPT: (frozenset({HandoffStatus.ASSIGNED}), HandoffStatus.ACCEPTED),
    FeedbackAction.CONTACT: (
        frozenset({HandoffStatus.ASSIGNED, HandoffStatus.ACCEPTED}),
        HandoffStatus.CONTACTED,
    ),
    FeedbackAction.REJECT: (OPEN_STATUSES, HandoffStatus.REJECTED),
    FeedbackAction.CONVERT: (
        frozenset({HandoffStatus.ACCEPTED, HandoffStatus.CONTACTED, HandoffStatus.CONVERTED}),
        HandoffStatus.CONVERTED,
    ),
}

SlaClock = Literal["accept", "contact"]
SlaOutcome = Literal["met", "breached"]


class HandoffNotFound(NotFound):
    """No handoff has this id."""


class RepNotFound(NotFound):
    """No rep has this id."""


class FeedbackConflict(Conflict):
    """Feedback that does not apply to the handoff as it stands."""


class InvalidFeedback(Invalid):
    """Feedback with an unknown reason, stage or author."""


class FeedbackNotAllowed(Forbidden):
    """Feedback from someone who is neither the handoff's rep nor a manager of its team."""


@dataclass(frozen=True)
class Handoff:
    """A lead handed to sales: who has it, its SLA clocks, and what sales said."""

    handoff_id: str
    lead_key: str
    status: HandoffStatus
    team: str
    tier: str | None
    score: int
    routing_reason: str
    rep_id: str | None = None
    queue: str | None = None
    email: str | None = None
    attributes: Mapping[str, Any] | None = None
    explanation: list[dict[str, Any]] | None = None
    routing_rule: str | None = None
    qualifying_activity_at: datetime | None = None
    assigned_at: datetime | None = None
    warn_at: datetime | None = None
    accept_by: datetime | None = None
    contact_by: datetime | None = None
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    closed_at: datetime | None = None
    accept_breaches: int = 0
    contact_breached: bool = False
    reassignments: int = 0
    previous_reps: tuple[str, ...] = ()
    reason: str | None = None
    converted_to: ConversionStage | None = None
    created_at: datetime | None = None
    # What sales said the deal is worth at each stage (money.py).
    opportunity_amount: Decimal | None = None
    opportunity_currency: str | None = None
    customer_amount: Decimal | None = None
    customer_currency: str | None = None
    # Where the lead came from when it was routed: first, qualifying and last touch.
    touches: Mapping[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> "Handoff":
        """A handoff from a table row (columns the core does not use are left out)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["status"] = HandoffStatus(values["status"])
        values["previous_reps"] = tuple(values.get("previous_reps") or ())
        if values.get("converted_to"):
            values["converted_to"] = ConversionStage(values["converted_to"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, in plain containers: what responses and events are built from."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(
            attributes=dict(self.attributes or {}),
            explanation=self.explanation or [],
            previous_reps=list(self.previous_reps),
        )
        return values

    @property
    def breached(self) -> bool:
        """Whether any SLA clock of this handoff ran out."""
        return self.accept_breaches > 0 or self.contact_breached


@dataclass(frozen=True)
class Deadlines:
    """When the rep must accept and first contact the lead, and when to warn."""

    warn_at: datetime
    accept_by: datetime
    contact_by: datetime


def deadlines(
    tier: str, assigned_at: datetime, playbook: Playbook, hours: WorkingHours | None = None
) -> Deadlines | None:
    """The SLA clock of a handoff of this tier started at `assigned_at` (None: no SLA).

    With `sla.working_hours_only` and the rep's working hours, only minutes inside those
    hours count (a lead assigned on Friday evening is due on Monday morning).
    """
    policy = playbook.sla.tiers.get(tier)
    if policy is None:
        return None
    counting = hours if playbook.sla.working_hours_only else None

    def after(minutes: float) -> datetime:
        return add_working_time(assigned_at, timedelta(minutes=minutes), counting)

    return Deadlines(
        warn_at=after(policy.accept_minutes * playbook.sla.warning_at),
        accept_by=after(policy.accept_minutes),
        contact_by=after(policy.contact_minutes),
    )


def add_working_time(start: datetime, duration: timedelta, hours: WorkingHours | None) -> datetime:
    """`start` plus `duration`, counting only time inside the working hours (None: all time)."""
    if hours is None:
        return start + duration
    zone = ZoneInfo(hours.timezone)
    local = start.astimezone(zone)
    left = duration
    for _ in range(366 * 2):  # a bounded walk, day by day
        day = local.date()
        opens = datetime.combine(day, hours.start, zone)
        closes = datetime.combine(day, hours.end, zone)
        if WEEKDAYS[day.weekday()] in hours.days and local < closes:
            begin = max(local, opens)
            if begin + left <= closes:
                return (begin + left).astimezone(start.tzinfo)
            left -= closes - begin
        local = datetime.combine(day + timedelta(days=1), time(0), zone)
    raise ValueError("working hours leave no time to count within two years")


def next_status(
    handoff: Handoff,
    action: str,
    playbook: Playbook,
    reason: str | None,
    converted_to: str | None,
) -> HandoffStatus:
    """The status feedback moves a handoff to, or the error saying why not.

    Conversion moves forward only (sql, then opportunity, then customer), so one handoff
    carries its lead through the whole funnel.
    """
    if action not in FEEDBACK_MOVES:
        raise InvalidFeedback(f"unknown action {action!r}", pointer="/action")
    allowed, target = FEEDBACK_MOVES[FeedbackAction(action)]
    if handoff.status not in allowed:
        raise FeedbackConflict(f"cannot {action} a handoff that is {handoff.status}")
    if action == FeedbackAction.REJECT and reason not in playbook.sla.reject_reasons:
        raise InvalidFeedback(
            f"reason must be one of {playbook.sla.reject_reasons}", pointer="/reason"
        )
    if action == FeedbackAction.CONVERT:
        if converted_to not in CONVERSION_ORDER:
            raise InvalidFeedback(
                f"converted_to must be one of {[s.value for s in CONVERSION_ORDER]}",
                pointer="/converted_to",
            )
        stage = ConversionStage(converted_to)
        if handoff.converted_to and CONVERSION_ORDER.index(stage) <= CONVERSION_ORDER.index(
            handoff.converted_to
        ):
            raise FeedbackConflict(
                f"the lead is at {handoff.converted_to} already; conversion only moves forward"
            )
    return target


def check_feedback_author(handoff: Handoff, rep_id: str | None, playbook: Playbook) -> None:
    """Refuse feedback from anyone but the handoff's rep or a manager of its team.

    `sla.feedback_from: anyone` lifts the check (a shared inbox, a dialer without rep ids).
    """
    if playbook.sla.feedback_from == "anyone":
        return
    if rep_id is None:
        raise InvalidFeedback("rep_id is required: who gives this feedback?", pointer="/rep_id")
    team = next((t for t in playbook.routing.teams if t.name == handoff.team), None)
    managers = set(team.managers) if team else set()
    known = {r.id for t in playbook.routing.teams for r in t.reps} | {
        m for t in playbook.routing.teams for m in t.managers
    }
    if rep_id not in known:
        raise InvalidFeedback(f"no rep or manager {rep_id!r}", pointer="/rep_id")
    if rep_id != handoff.rep_id and rep_id not in managers:
        raise FeedbackNotAllowed(
            f"{rep_id} is neither the rep of this handoff nor a manager of team {handoff.team}",
            pointer="/rep_id",
        )


def accept_sla_outcome(handoff: Handoff, now: datetime) -> SlaOutcome | None:
    """The accept clock's outcome if the handoff is accepted (or contacted) at `now`.

    None when no accept clock runs (no SLA, or accepted already). An accept after the
    deadline whose breach timer has not fired yet is a breach all the same.
    """
    if handoff.accept_by is None or handoff.accepted_at is not None:
        return None
    if handoff.status != HandoffStatus.ASSIGNED:
        return None
    return "met" if now <= handoff.accept_by else "breached"


def sla_seconds_left(handoff: Handoff, now: datetime) -> int | None:
    """Seconds left on the handoff's running SLA clock (negative when overdue; None: none runs)."""
    due = {
        HandoffStatus.ASSIGNED: handoff.accept_by,
        HandoffStatus.ACCEPTED: handoff.contact_by,
    }.get(handoff.status)
    return round((due - now).total_seconds()) if due else None


@dataclass(frozen=True)
class Reassign:
    """After an accept breach: give the lead to another rep with a fresh clock."""

    decision: RoutingDecision
    previous_reps: tuple[str, ...]


@dataclass(frozen=True)
class Escalate:
    """After an accept breach: no more reassignments (or nobody eligible); the manager's queue."""

    why: str
    previous_reps: tuple[str, ...]


def after_accept_breach(
    handoff: Handoff, reps: list[RepLoad], playbook: Playbook, now: datetime
) -> Reassign | Escalate:
    """What an accept breach does: reassign to a rep who never had the lead, or escalate."""
    previous = (*handoff.previous_reps, *([handoff.rep_id] if handoff.rep_id else []))
    if handoff.reassignments >= playbook.sla.max_reassignments:
        return Escalate(
            f"{handoff.reassignments} reassignment(s) already, the most the playbook allows",
            previous,
        )
    decision = route_lead(
        handoff.lead_key,
        handoff.email,
        dict(handoff.attributes or {}),
        handoff.tier or "",
        reps,
        playbook,
        now,
        exclude=frozenset(previous),
    )
    if decision.rep_id is None:
        return Escalate("no other rep is eligible", previous)
    return Reassign(decision, previous)
