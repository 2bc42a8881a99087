"""Pure handoff lifecycle: SLA deadlines and which feedback moves a handoff where."""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.errors import Conflict
from shared.playbook import Playbook
from shared.playbook.routing import WEEKDAYS, WorkingHours

OPEN = {"assigned", "accepted", "contacted"}
# action -> (statuses it may follow, status it leads to)
TRANSITIONS = {
    "accept": ({"assigned"}, "accepted"),
    "contact": ({"assigned", "accepted"}, "contacted"),
    "reject": ({"assigned", "accepted", "contacted"}, "rejected"),
    "convert": ({"accepted", "contacted"}, "converted"),
}
CONVERTED_TO = {"sql", "opportunity", "customer"}


class InvalidFeedback(Conflict):
    """Feedback that does not apply to the handoff as it stands (answered 409 or 422)."""

    def __init__(self, message: str, status: int = 409, field: str = "/") -> None:
        super().__init__(message, status=status, pointer=field)
        self.field = field


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
    status: str, action: str, playbook: Playbook, reason: str | None, converted_to: str | None
) -> str:
    """The status feedback moves a handoff to, or InvalidFeedback saying why not."""
    if action not in TRANSITIONS:
        raise InvalidFeedback(f"unknown action {action!r}", 422, "/action")
    allowed, target = TRANSITIONS[action]
    if status not in allowed:
        raise InvalidFeedback(f"cannot {action} a handoff that is {status}")
    if action == "reject" and reason not in playbook.sla.reject_reasons:
        raise InvalidFeedback(
            f"reason must be one of {playbook.sla.reject_reasons}", 422, "/reason"
        )
    if action == "convert" and converted_to not in CONVERTED_TO:
        raise InvalidFeedback(
            f"converted_to must be one of {sorted(CONVERTED_TO)}", 422, "/converted_to"
        )
    return target
