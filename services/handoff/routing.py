"""Pure routing: pick the team and the rep for a qualified lead, and say why."""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.playbook import Playbook
from shared.playbook.routing import WEEKDAYS, WorkingHours


@dataclass(frozen=True)
class RepLoad:
    """A rep as routing sees them: fairness ledger, open handoffs, availability."""

    rep_id: str
    name: str
    team: str
    weight: int
    assigned_total: int
    active: bool = True
    open_handoffs: int = 0
    capacity: int = 25
    available: bool = True  # False while out of office
    working_hours: WorkingHours | None = None


@dataclass(frozen=True)
class RoutingDecision:
    """Who gets the lead (None: a queue), the team, the rule, and why, in plain words."""

    rep_id: str | None
    team: str
    rule: str
    reason: str
    skipped: dict[str, str] = field(default_factory=dict)  # rep id -> why not them


def in_working_hours(hours: WorkingHours | None, now: datetime) -> bool:
    """Whether `now` falls in the rep's working hours (in their time zone)."""
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(hours.timezone))
    return WEEKDAYS[local.weekday()] in hours.days and hours.start <= local.time() <= hours.end


def why_not(rep: RepLoad, now: datetime) -> str | None:
    """Why a rep cannot take a lead now, or None when they can."""
    if not rep.active:
        return "not in the roster"
    if not rep.available:
        return "out of office"
    if rep.open_handoffs >= rep.capacity:
        return f"at capacity ({rep.open_handoffs}/{rep.capacity} open)"
    if not in_working_hours(rep.working_hours, now):
        return "outside working hours"
    return None


def pick_team(attributes: dict[str, Any], tier: str, playbook: Playbook) -> tuple[str, str]:
    """The team of the first routing rule the lead matches (else the first team), and the rule."""
    values = {**attributes, "tier": tier}
    for rule in playbook.routing.rules:
        if all(cond.matches(values.get(key)) for key, cond in rule.when.items()):
            return rule.team, rule.name
    return playbook.routing.teams[0].name, "default team"


def route_lead(
    lead_key: str,
    email: str | None,
    attributes: dict[str, Any],
    tier: str,
    reps: list[RepLoad],
    playbook: Playbook,
    now: datetime,
    exclude: frozenset[str] = frozenset(),
) -> RoutingDecision:
    """Account owner first; else the rule's team by weighted fair rotation; else its queue.

    Fair rotation picks the eligible rep with the fewest handoffs per unit of weight in a
    ledger that never resets; ties go to a per-lead pseudo-random order, so nobody is
    favoured by name or seniority. `exclude` holds reps who already had (and lost) the lead.
    """
    by_id = {r.rep_id: r for r in reps}
    domain = email.rsplit("@", 1)[1].lower() if email and "@" in email else None
    owner = by_id.get(playbook.routing.accounts.get(domain or "", ""))
    skipped: dict[str, str] = {}
    if owner and owner.rep_id not in exclude:
        reason = why_not(owner, now)
        if reason is None:
            return RoutingDecision(
                owner.rep_id, owner.team, "account owner", f"{owner.name} owns the account {domain}"
            )
        skipped[owner.rep_id] = f"account owner, but {reason}"
    team, rule = pick_team(attributes, tier, playbook)
    candidates = []
    for rep in sorted((r for r in reps if r.team == team), key=lambda r: r.rep_id):
        reason = "had this lead already" if rep.rep_id in exclude else why_not(rep, now)
        if reason:
            skipped[rep.rep_id] = reason
        else:
            candidates.append(rep)
    if not candidates:
        return RoutingDecision(
            None, team, rule, f"rule {rule}: no eligible rep in {team}; queued", skipped
        )

    def rank(rep: RepLoad) -> tuple[float, str]:
        tie = hashlib.sha256(f"{lead_key}\x1f{rep.rep_id}".encode()).hexdigest()
        return (rep.assigned_total / rep.weight, tie)

    chosen = min(candidates, key=rank)
    return RoutingDecision(
        chosen.rep_id,
        team,
        rule,
        f"rule {rule} -> team {team}: fair rotation chose {chosen.name} "
        f"({chosen.assigned_total} earlier handoffs, weight {chosen.weight}) "
        f"among {len(candidates)} eligible rep(s)",
        skipped,
    )


def ledger_on_return(rep: RepLoad, teammates: list[RepLoad]) -> int:
    """The ledger a rep back from absence starts from: level with the least-loaded teammate.

    Without this, a rep away for a week would win every lead until caught up (a flood).
    """
    others = [t.assigned_total / t.weight for t in teammates if t.rep_id != rep.rep_id and t.active]
    if not others:
        return rep.assigned_total
    return max(rep.assigned_total, int(min(others) * rep.weight))
