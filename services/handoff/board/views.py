"""What the board shows, as plain data: clocks, durations, bars, the playbook in words.

Pure: no I/O and no clock reads (`now` comes in), so every rule here is a unit test.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.handoff.policies import last_feedback_at, stale_deadlines
from services.handoff.routing import RepLoad, in_working_hours
from services.handoff.status import CONVERSION_ORDER, FEEDBACK_MOVES, WAITING_STATUSES, Handoff
from shared.errors import Invalid
from shared.playbook import Playbook
from shared.playbook.handoff import WorkingHours
from shared.playbook.scoring_rules import Condition

WAITING = frozenset(s.value for s in WAITING_STATUSES)


@dataclass(frozen=True)
class Clock:
    """The SLA clock running on a handoff: which one, when it warns and when it is due."""

    name: str  # "accept" or "contact"
    warn_at: datetime
    due_at: datetime
    seconds_left: int
    state: str  # "ok", "warning" or "breached"


def running_clock(handoff: dict[str, Any], now: datetime, warning_at: float) -> Clock | None:
    """The clock a rep is racing now: accept while assigned, contact while accepted."""
    status, assigned_at = handoff["status"], handoff.get("assigned_at")
    if status == "assigned" and handoff.get("accept_by"):
        name, due = "accept", handoff["accept_by"]
        warn = handoff.get("warn_at") or due
    elif status == "accepted" and handoff.get("contact_by") and assigned_at:
        name, due = "contact", handoff["contact_by"]
        warn = assigned_at + (due - assigned_at) * warning_at
    else:
        return None
    left = (due - now).total_seconds()
    state = "breached" if left <= 0 else "warning" if now >= warn else "ok"
    return Clock(name, warn, due, int(left), state)


# The name a manager-queue countdown reads with: "12:30 to pick up", "overdue to pick up".
MANAGER_CLOCK = "pick up"


def manager_queue_clock(
    handoff: dict[str, Any], warning_due: datetime | None, playbook: Playbook, now: datetime
) -> Clock | None:
    """The manager queue's clock on an escalated handoff, shown as the SLA clocks are.

    The breach is the handoff's `queue_due_at`; the warning is its pending timer, or (once
    that fired) the point `sla.manager_queue.warning_at` of the tier's wait before the breach.
    """
    due = handoff.get("queue_due_at")
    if handoff["status"] != "escalated" or due is None:
        return None
    warn = warning_due
    if warn is None:
        policy = playbook.sla.manager_queue
        minutes = policy.tiers.get(handoff.get("tier") or "")
        warn = due - timedelta(minutes=minutes or 0) * (1 - policy.warning_at)
    left = (due - now).total_seconds()
    state = "breached" if left <= 0 else "warning" if now >= warn else "ok"
    return Clock(MANAGER_CLOCK, warn, due, int(left), state)


@dataclass(frozen=True)
class StaleClock:
    """An accepted or contacted handoff without feedback: since when, its reminder (due, or
    already sent) and when it goes back to marketing as stale."""

    since: datetime | None
    remind_at: datetime | None
    reminder_sent: bool
    recycle_at: datetime


def stale_clock(
    handoff: dict[str, Any],
    reminder_due: datetime | None,
    recycle_due: datetime | None,
    playbook: Playbook,
) -> StaleClock | None:
    """The stale clock of an open handoff from its pending timers (None: no clock runs).

    The recycle timer runs until the lead is recycled, so without it there is no clock; a
    reminder whose timer is gone was sent, due when the playbook's `sla.stale` put it.
    """
    if recycle_due is None:
        return None
    row = Handoff.from_row(handoff)
    computed = stale_deadlines(row, playbook)
    return StaleClock(
        since=last_feedback_at(row),
        remind_at=reminder_due or (computed[0] if computed else None),
        reminder_sent=reminder_due is None,
        recycle_at=recycle_due,
    )


@dataclass(frozen=True)
class PolicyWait:
    """A rejected lead held by its reject reason's policy: back to routing at a date
    (revisit) or not routed before a date unless its fit changes (suppress). The board
    writes `before`, the date, then `after`."""

    policy: str
    until: datetime
    before: str
    after: str = ""


def policy_wait(handoff: dict[str, Any], revisit_due: datetime | None) -> PolicyWait | None:
    """What a rejected lead waits for: its pending revisit timer, or its suppression date."""
    if handoff.get("recycle_policy") == "revisit":
        at = revisit_due or handoff.get("revisit_at")
        return PolicyWait("revisit", at, "back to routing on") if at else None
    if handoff.get("recycle_policy") == "suppress" and handoff.get("suppressed_until"):
        until = handoff["suppressed_until"]
        return PolicyWait("suppress", until, "not routed until", "unless its fit changes")
    return None


def when(at: datetime) -> str:
    """A moment as the board writes dates: 2026-12-07 06:20 UTC."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def duration(seconds: float) -> str:
    """A span as people read it on a wall: 4:07, 1h 05m, 2d 3h; negative spans get a minus."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s < 3600:
        return f"{sign}{s // 60}:{s % 60:02d}"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600}h"


def actions_for(status: str) -> list[str]:
    """The feedback a rep may give a handoff in this status (the API's own moves)."""
    return [action.value for action, (allowed, _) in FEEDBACK_MOVES.items() if status in allowed]


def conversion_stages() -> list[str]:
    """Stages a convert action may name, in funnel order."""
    return [stage.value for stage in CONVERSION_ORDER]


def feedback_authors(playbook: Playbook) -> list[tuple[str, str]]:
    """Who may give feedback from the board, as (id, label): managers first, then reps."""
    managers = [(m, f"{m} (manager, {t.name})") for t in playbook.routing.teams for m in t.managers]
    reps = [(r.id, f"{r.name} ({t.name})") for t in playbook.routing.teams for r in t.reps]
    return managers + reps


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart: its label, value and width in percent of the widest."""

    label: str
    value: float
    text: str
    width_pct: float


def bars(values: list[tuple[str, float, str]], scale_max: float | None = None) -> list[Bar]:
    """Bars scaled to the largest value (or to `scale_max`, e.g. 1.0 for ratios)."""
    top = scale_max if scale_max is not None else max((v for _, v, _ in values), default=0)
    return [
        Bar(label, value, text, round(100 * value / top, 1) if top > 0 else 0.0)
        for label, value, text in values
    ]


def percent(ratio: float | None) -> str:
    """A ratio as a percentage, or a dash when there is nothing to divide."""
    return "–" if ratio is None else f"{ratio * 100:.0f}%"


@dataclass(frozen=True)
class RepRow:
    """A rep as the board lists them."""

    rep_id: str
    name: str
    team: str
    open_handoffs: int
    capacity: int
    load_pct: float
    available: bool
    active: bool
    hours: str
    in_hours_now: bool


def rep_rows(reps: list[RepLoad], now: datetime) -> list[RepRow]:
    """Reps with their load against capacity and whether they are inside working hours now."""
    return [
        RepRow(
            rep_id=r.rep_id,
            name=r.name,
            team=r.team,
            open_handoffs=r.open_handoffs,
            capacity=r.capacity,
            load_pct=min(100.0, round(100 * r.open_handoffs / r.capacity, 1)),
            available=r.available,
            active=r.active,
            hours=describe_hours(r.working_hours),
            in_hours_now=in_working_hours(r.working_hours, now),
        )
        for r in reps
    ]


def describe_hours(hours: WorkingHours | None) -> str:
    """Working hours in words."""
    if hours is None:
        return "any time"
    days = ", ".join(d.capitalize() for d in hours.days)
    return f"{days} {hours.start:%H:%M}–{hours.end:%H:%M} ({hours.timezone})"


def describe_condition(condition: Condition) -> str:
    """One playbook condition in words, e.g. "at least 200" or "matches (?i)VP"."""
    if condition.equals is not None:
        return f"is {condition.equals}"
    if condition.in_ is not None:
        return "is one of " + ", ".join(str(v) for v in condition.in_)
    parts = []
    if condition.gte is not None:
        parts.append(f"at least {condition.gte:g}")
    if condition.lte is not None:
        parts.append(f"at most {condition.lte:g}")
    if condition.regex is not None:
        parts.append(f"matches {condition.regex}")
    if condition.exists is not None:
        parts.append("is present" if condition.exists else "is absent")
    return " and ".join(parts) or "any value"


def describe_when(when: dict[str, Condition]) -> str:
    """A rule's conditions in words, or "always"."""
    return "; ".join(f"{field} {describe_condition(c)}" for field, c in when.items()) or "always"


def playbook_view(playbook: Playbook) -> dict[str, Any]:
    """The playbook as sentences and rows for people who never open YAML."""
    scoring = playbook.scoring
    return {
        "mql_threshold": playbook.taxonomy.mql_threshold,
        "stages": list(playbook.taxonomy.stages.items()),
        "tiers": [
            {
                "name": t.name,
                "min_score": t.min_score,
                "definition": t.definition,
                "sla": playbook.sla.tiers.get(t.name),
            }
            for t in playbook.taxonomy.tiers
        ],
        "half_life_days": scoring.decay.half_life_days,
        "fit": [
            {
                "name": r.name,
                "when": f"{r.attribute} {describe_condition(r)}",
                "effect": "disqualifies the lead" if r.disqualify else f"{r.points:+d} points",
            }
            for r in scoring.fit
        ],
        "behaviour": [
            {
                "name": r.rule_name,
                "activity": r.activity,
                "when": describe_when(r.when),
                "points": f"{r.points:+d}",
                "cap": f"at most {r.cap.points} per {r.cap.period_days:g} days" if r.cap else "",
            }
            for r in scoring.behaviour
        ],
        "accounts": sorted(playbook.routing.accounts.items()),
        "rules": [
            {"name": r.name, "team": r.team, "when": describe_when(r.when)}
            for r in playbook.routing.rules
        ],
        "teams": [
            {
                "name": t.name,
                "reps": ", ".join(r.name for r in t.reps),
                "managers": ", ".join(t.managers),
                "fallback_queue": t.fallback_queue or f"{t.name}-queue",
                "manager_queue": t.manager_queue or f"{t.name}-manager",
            }
            for t in playbook.routing.teams
        ],
        "warning_pct": round(playbook.sla.warning_at * 100),
        "max_reassignments": playbook.sla.max_reassignments,
        "reject_reasons": playbook.sla.reject_reasons,
        "feedback_from": (
            "anyone"
            if playbook.sla.feedback_from == "anyone"
            else "the handoff's rep or a manager of its team"
        ),
    }


def period(since: date | None, until: date | None, today: date) -> tuple[datetime, datetime]:
    """A period of whole UTC days, `until` included; the last 30 days by default."""
    last = until or today
    first = since or last - timedelta(days=29)
    if first > last:
        raise Invalid("since is after until", pointer="/since")
    start = datetime.combine(first, time(0), UTC)
    return start, datetime.combine(last + timedelta(days=1), time(0), UTC)


def timeline(
    lead: dict[str, Any] | None,
    handoffs: list[dict[str, Any]],
    transitions: list[dict[str, Any]],
) -> list[tuple[datetime, str]]:
    """A lead's story, oldest first: activities, stage transitions, handoffs, sales feedback."""
    # causes before effects when times tie (sorted() keeps this order)
    items: list[tuple[datetime, str]] = [
        (datetime.fromisoformat(a["at"]), f"activity: {a['rule']} ({a['points']:+d} points)")
        for a in (lead or {}).get("activities", [])
    ]
    items += [(t["at"], f"stage: {t['transition'].replace('_', ' ')}") for t in transitions]
    for h in handoffs:
        who = h["rep_name"] or h["rep_id"]
        if h["assigned_at"]:
            items.append((h["assigned_at"], f"handed to {who} ({h['routing_reason']})"))
        elif h["queue"]:
            items.append((h["created_at"], f"waiting in {h['queue']}"))
        for column, text in (
            ("accepted_at", f"accepted by {who}"),
            ("contacted_at", f"first contact by {who}"),
        ):
            if h[column]:
                items.append((h[column], text))
        if h["closed_at"]:
            items.append((h["closed_at"], closing(h)))
    return sorted(items, key=lambda item: item[0])


def closing(handoff: dict[str, Any]) -> str:
    """How a handoff closed, in words, with the date its reject policy set if any."""
    status, reason = handoff["status"], handoff.get("reason")
    if status == "recycled":
        return f"recycled to marketing: {reason}"
    if status == "erased":
        return "erased"
    if status != "rejected":
        return f"converted to {handoff['converted_to']}"
    wait = policy_wait(handoff, None)
    if wait is not None:
        after = f" {wait.after}" if wait.after else ""
        return f"rejected: {reason}; {wait.before} {when(wait.until)}{after}"
    policy = handoff.get("recycle_policy")
    return f"rejected: {reason}" + (f" ({policy})" if policy and policy != "recycle" else "")
