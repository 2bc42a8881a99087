"""Pure post-handoff policies (issue 24): the manager queue's clock and its final policy, and
what a reject reason does to the lead. No I/O and no clock reads: every decision takes `now`."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.handoff.status import Handoff, HandoffStatus
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


@dataclass(frozen=True)
class RejectOutcome:
    """What a rejection does: the policy, whether the lead goes back to marketing (`recycled`),
    and when it is routed again (revisit) or until when it is not (suppress)."""

    reason: str
    policy: str
    recycle: bool
    revisit_at: datetime | None = None
    suppressed_until: datetime | None = None


def reject_outcome(reason: str, playbook: Playbook, now: datetime) -> RejectOutcome:
    """The playbook's policy for a reject reason (recycle at once when it names none)."""
    rule = playbook.sla.reject_policies.get(reason)
    policy = rule.policy if rule else "recycle"
    days = timedelta(days=rule.days) if rule and rule.days else None
    if policy == "revisit":
        return RejectOutcome(reason, policy, recycle=True, revisit_at=now + (days or timedelta()))
    if policy == "suppress":
        return RejectOutcome(
            reason, policy, recycle=True, suppressed_until=now + (days or timedelta())
        )
    return RejectOutcome(reason, policy, recycle=policy == "recycle")


@dataclass(frozen=True)
class Suppression:
    """The lead's last rejection that holds back routing: until when, and its fit then."""

    policy: str
    until: datetime | None
    fit_score: float | None


def routing_suppressed(
    suppression: Suppression | None, fit_score: float | None, now: datetime
) -> bool:
    """Whether a lead that qualifies at `now` stays unrouted: disqualified for good, or
    suppressed until a date while its fit is what it was when sales said `not_a_fit`."""
    if suppression is None:
        return False
    if suppression.policy == "disqualify":
        return True
    if suppression.policy != "suppress" or suppression.until is None or now >= suppression.until:
        return False
    return fit_score == suppression.fit_score


# Statuses in which a handoff can go stale: a rep has it and said something, then nothing.
STALE_STATUSES = frozenset({HandoffStatus.ACCEPTED, HandoffStatus.CONTACTED})


def last_feedback_at(handoff: Handoff) -> datetime | None:
    """When sales last said something about the handoff (accepted or contacted)."""
    times = [t for t in (handoff.accepted_at, handoff.contacted_at) if t is not None]
    return max(times) if times else None


def stale_deadlines(handoff: Handoff, playbook: Playbook) -> tuple[datetime, datetime] | None:
    """When an accepted or contacted handoff without further feedback gets its reminder and
    when it is recycled (None: not in such a status, or no stale policy for its tier)."""
    if handoff.status not in STALE_STATUSES:
        return None
    policy = playbook.sla.stale.tiers.get(handoff.tier or "")
    since = last_feedback_at(handoff)
    if policy is None or since is None:
        return None
    return (
        since + timedelta(days=policy.remind_days),
        since + timedelta(days=policy.recycle_days),
    )


def raised_stale_deadlines(
    before: Handoff, after: Handoff, playbook: Playbook
) -> tuple[datetime, datetime] | None:
    """The stale clock of a handoff whose tier rose from `before` to `after`: the new tier's
    reminder and recycle where sooner than the running ones, never later (a clock starts if
    none ran); None when the clock does not change."""
    new = stale_deadlines(after, playbook)
    if new is None:
        return None
    old = stale_deadlines(before, playbook)
    if old is None:
        return new
    tightened = (min(old[0], new[0]), min(old[1], new[1]))
    return None if tightened == old else tightened


@dataclass(frozen=True)
class RecentHandoff:
    """A handoff of the lead or its account that routing may give the lead back by."""

    lead_key: str
    domain: str | None
    rep_id: str
    assigned_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class ExistingOwner:
    """The rep who had the lead or its account recently, and why routing prefers them."""

    rep_id: str
    why: str


def existing_owner(
    lead_key: str,
    domain: str | None,
    recent: list[RecentHandoff],
    playbook: Playbook,
    now: datetime,
) -> ExistingOwner | None:
    """The rep who had this lead, else its account, in an open handoff or one assigned or
    closed within `routing.existing_owner.days` (None: off, nobody, or a free-mail domain)."""
    policy = playbook.routing.existing_owner
    if policy.days is None:
        return None
    since = now - timedelta(days=policy.days)
    account = domain if domain and domain not in policy.ignore_domains else None

    def fresh(h: RecentHandoff) -> bool:
        return h.closed_at is None or max(h.closed_at, h.assigned_at) >= since

    def latest(hs: list[RecentHandoff]) -> RecentHandoff | None:
        return max(hs, key=lambda h: (h.assigned_at, h.rep_id), default=None)

    same_lead = latest([h for h in recent if h.lead_key == lead_key and fresh(h)])
    if same_lead is not None:
        return ExistingOwner(same_lead.rep_id, "had this lead before")
    if account is None:
        return None
    same_account = latest([h for h in recent if h.domain == account and fresh(h)])
    if same_account is not None:
        return ExistingOwner(same_account.rep_id, f"has the account {account}")
    return None


def email_domain(email: str | None) -> str | None:
    """The lower-cased domain of an email address (None without one)."""
    return email.rsplit("@", 1)[1].lower() if email and "@" in email else None
