"""Pure routing: pick the rep for a qualified lead, and say why."""

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RepLoad:
    """A rep as routing sees them: weight and their fairness ledger."""

    rep_id: str
    name: str
    team: str
    weight: int
    assigned_total: int
    active: bool = True


@dataclass(frozen=True)
class RoutingDecision:
    """Who gets the lead (None: the team's queue) and the reason, in words a rep understands."""

    rep_id: str | None
    team: str
    reason: str


def route_lead(lead_key: str, team: str, reps: list[RepLoad]) -> RoutingDecision:
    """Weighted fair rotation: the active rep with the fewest assignments per unit of weight.

    Ties go to a per-lead pseudo-random order, so no rep is favoured by name or seniority.
    """
    candidates = [r for r in reps if r.active and r.team == team]
    if not candidates:
        return RoutingDecision(None, team, f"no active rep in team {team!r}; queued")

    def rank(rep: RepLoad) -> tuple[float, str]:
        tie = hashlib.sha256(f"{lead_key}\x1f{rep.rep_id}".encode()).hexdigest()
        return (rep.assigned_total / rep.weight, tie)

    chosen = min(candidates, key=rank)
    return RoutingDecision(
        chosen.rep_id,
        team,
        f"team {team}: fair rotation chose {chosen.name} "
        f"({chosen.assigned_total} earlier handoffs, weight {chosen.weight}) "
        f"among {len(candidates)} active rep(s)",
    )
