"""Pure routing: pick the team and the rep for a qualified lead, and say why."""

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from shared.playbook import Playbook
from shared.playbook.handoff import WEEKDAYS, WorkingHours


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
    # Fair rotation only: the chosen rep's handoffs per unit of weight before this lead,
    # the level the team's rotation has reached (new and returning reps start there).
    rotation_level: float | None = None


@dataclass(frozen=True)
class RepScope:
    """The reps a transaction locks: every rep of some teams and a few more by id, or all."""

    teams: frozenset[str] = frozenset()
    rep_ids: frozenset[str] = frozenset()
    everyone: bool = False

    def __or__(self, other: "RepScope") -> "RepScope":
        if self.everyone or other.everyone:
            return EVERY_REP
        return RepScope(self.teams | other.teams, self.rep_ids | other.rep_ids)


EVERY_REP = RepScope(everyone=True)


def routing_scope(
    email: str | None, attributes: dict[str, Any], tier: str, playbook: Playbook
) -> RepScope:
    """The reps `route_lead` can read or choose for a lead: its rule's team and its account's
    owner; every rep while the existing-owner policy is on (who had the lead or its account
    is read from the handoffs, so not known before the lock).

    Routing locks only these, so leads of different teams are routed side by side; the
    decision is the same as over every rep, since `route_lead` looks at no other.
    """
    if playbook.routing.existing_owner.days is not None:
        return EVERY_REP
    team, _ = pick_team(attributes, tier, playbook)
    owner = playbook.routing.accounts.get(_domain(email) or "")
    return RepScope(frozenset({team}), frozenset({owner} if owner else ()))


def _domain(email: str | None) -> str | None:
    return email.rsplit("@", 1)[1].lower() if email and "@" in email else None


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
    previous: tuple[str, str] | None = None,
) -> RoutingDecision:
    """Account owner first; then the existing owner (`previous`: the rep who had the lead or
    its account recently, and why); else the rule's team by weighted fair rotation; else its
    queue.

    Fair rotation picks the eligible rep with the fewest handoffs per unit of weight in a
    ledger that never resets; ties go to a per-lead pseudo-random order, so nobody is
    favoured by name or seniority. `exclude` holds reps who already had (and lost) the lead.
    """
    by_id = {r.rep_id: r for r in reps}
    domain = _domain(email)
    owner = by_id.get(playbook.routing.accounts.get(domain or "", ""))
    skipped: dict[str, str] = {}
    if owner and owner.rep_id not in exclude:
        reason = why_not(owner, now)
        if reason is None:
            return RoutingDecision(
                owner.rep_id, owner.team, "account owner", f"{owner.name} owns the account {domain}"
            )
        skipped[owner.rep_id] = f"account owner, but {reason}"
    had = by_id.get(previous[0]) if previous else None
    if previous and had and had.rep_id not in exclude:
        reason = why_not(had, now)
        if reason is None:
            return RoutingDecision(
                had.rep_id, had.team, "existing owner", f"{had.name} {previous[1]}: existing owner"
            )
        skipped[had.rep_id] = f"existing owner, but {reason}"
    team, rule = pick_team(attributes, tier, playbook)
    candidates = []
    for rep in sorted((r for r in reps if r.team == team), key=lambda r: r.rep_id):
        reason = "had this lead already" if rep.rep_id in exclude else why_not(rep, now)
        if reason:
            skipped[rep.rep_id] = reason
        else:
            candidates.append(rep)
    if not candidates:
        why = "; ".join(f"{rep_id}: {reason}" for rep_id, reason in sorted(skipped.items()))
        return RoutingDecision(
            None, team, rule, f"rule {rule}: no eligible rep in {team} ({why}); queued", skipped
        )

    def rank(rep: RepLoad) -> tuple[float, str]:
        return (rep.assigned_total / rep.weight, tie_break(lead_key, rep.rep_id))

    ranked = sorted(candidates, key=rank)
    chosen = ranked[0]
    level = chosen.assigned_total / chosen.weight
    loads = ", ".join(f"{r.name} {r.assigned_total}/{r.weight}" for r in ranked)
    tied = [r.name for r in ranked if r.assigned_total / r.weight == level]
    tie = (
        f"; tie between {', '.join(tied)} broken by a hash of lead and rep" if len(tied) > 1 else ""
    )
    return RoutingDecision(
        chosen.rep_id,
        team,
        rule,
        f"rule {rule} -> team {team}: fair rotation chose {chosen.name} "
        f"(handoffs/weight among {len(candidates)} eligible: {loads}){tie}",
        skipped,
        rotation_level=level,
    )


# A lead meets the same reps again at each reassignment and drain (and a backtest routes
# thousands): the hash is kept for the most recent pairs.
@lru_cache(maxsize=16384)
def tie_break(lead_key: str, rep_id: str) -> str:
    """A per-lead pseudo-random order of reps, so no rep wins ties by name or seniority."""
    return hashlib.sha256(f"{lead_key}\x1f{rep_id}".encode()).hexdigest()


def levelled_ledger(assigned_total: int, weight: int, rotation_level: float | None) -> int:
    """The ledger a new or returning rep starts from: the team's rotation level, never lower.

    The rotation level is the highest handoffs-per-weight at which fair rotation has picked
    anyone in the team. Everyone eligible at that pick stood at or above it, so a rep who
    starts there is never ahead of the reps actually taking leads, and is not flooded with
    every lead until their ledger catches up (a teammate who is never on duty, at 0, does
    not pull the level down).
    """
    if rotation_level is None:
        return assigned_total
    return max(assigned_total, math.floor(rotation_level * weight))


def next_shift_start(hours: WorkingHours | None, now: datetime) -> datetime | None:
    """When the rep's working hours next begin after `now` (None: no hours, or never)."""
    if hours is None:
        return None
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    for days in range(8):
        day = local.date() + timedelta(days=days)
        opens = datetime.combine(day, hours.start, zone)
        if WEEKDAYS[day.weekday()] in hours.days and opens > local:
            return opens.astimezone(now.tzinfo)
    return None


def next_queue_check(team: str, reps: list[RepLoad], now: datetime) -> datetime | None:
    """When a rep of the team who is off shift but otherwise free next starts work, if any."""
    starts = [
        start
        for r in reps
        if r.team == team and r.active and r.available and r.open_handoffs < r.capacity
        if not in_working_hours(r.working_hours, now)
        if (start := next_shift_start(r.working_hours, now)) is not None
    ]
    return min(starts, default=None)
