"""Pure handoff lifecycle: SLA deadlines and which feedback moves a handoff where."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.playbook import Playbook

OPEN = {"assigned", "accepted", "contacted"}
# action -> (statuses it may follow, status it leads to)
TRANSITIONS = {
    "accept": ({"assigned"}, "accepted"),
    "contact": ({"assigned", "accepted"}, "contacted"),
    "reject": ({"assigned", "accepted", "contacted"}, "rejected"),
    "convert": ({"accepted", "contacted"}, "converted"),
}
CONVERTED_TO = {"sql", "opportunity", "customer"}


class InvalidFeedback(ValueError):
    """Feedback that does not apply to the handoff as it stands (answered 409 or 422)."""

    def __init__(self, message: str, status: int = 409, field: str = "/") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Deadlines:
    """When the rep must accept and first contact the lead, and when to warn."""

    warn_at: datetime
    accept_by: datetime
    contact_by: datetime


def deadlines(tier: str, assigned_at: datetime, playbook: Playbook) -> Deadlines | None:
    """The SLA clock of a handoff of this tier started at `assigned_at` (None: no SLA)."""
    policy = playbook.sla.tiers.get(tier)
    if policy is None:
        return None
    accept = timedelta(minutes=policy.accept_minutes)
    return Deadlines(
        warn_at=assigned_at + accept * playbook.sla.warning_at,
        accept_by=assigned_at + accept,
        contact_by=assigned_at + timedelta(minutes=policy.contact_minutes),
    )


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
