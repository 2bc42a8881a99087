"""Pure post-handoff policies (issue 24): the manager queue's clock and its final policy, and
what a reject reason does to the lead. No I/O and no clock reads: every decision takes `now`."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.playbook import Playbook


@dataclass(frozen=True)
class Recycle:
    """Close the handoff and send the lead back to marketing, saying why and by which policy."""

    reason: str
    policy: str = "recycle"


@dataclass(frozen=True)
class KeepWaiting:
    """Leave the lead where it waits (only the breach event goes out)."""


def manager_queue_deadlines(
    tier: str | None, escalated_at: datetime, playbook: Playbook
) -> tuple[datetime, datetime] | None:
    """The manager queue's warning and breach times for a lead escalated at `escalated_at`
    (None: the playbook gives its tier no manager-queue clock)."""
    policy = playbook.sla.manager_queue
    minutes = policy.tiers.get(tier or "")
    if minutes is None:
        return None
    wait = timedelta(minutes=minutes)
    return escalated_at + wait * policy.warning_at, escalated_at + wait


def manager_queue_outcome(playbook: Playbook) -> Recycle | KeepWaiting:
    """What the manager queue's breach does: the playbook's final policy."""
    policy = playbook.sla.manager_queue
    return Recycle(policy.reason) if policy.final == "recycle" else KeepWaiting()
