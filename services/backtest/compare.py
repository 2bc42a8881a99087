"""Pure comparison of two playbooks' outcomes, and calibration of the MQL threshold.

Everything here turns outcomes and sales' verdicts into plain numbers (dicts ready for
JSON); rendering them is `report.py`'s job.
"""

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.backtest.simulate import Judgement, Outcome, Qualification
from shared.playbook import Playbook

SAMPLE = 10


def week_of(at: datetime) -> str:
    """The ISO date of the Monday starting `at`'s week."""
    return (at.date() - timedelta(days=at.weekday())).isoformat()


def first_mqls(outcome: Outcome) -> dict[str, Qualification]:
    """Each lead's first qualification, by the key the lead ended under."""
    first: dict[str, Qualification] = {}
    for mql in outcome.mqls:
        first.setdefault(outcome.lead_of(mql.lead_key), mql)
    return first


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    values = sorted(values)
    return {
        "median": round(statistics.median(values), 2),
        "p90": round(values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)], 2),
    }


def summarise(outcome: Outcome, playbook: Playbook, judged: dict[str, Judgement]) -> dict[str, Any]:
    """One playbook's numbers: MQLs by week and tier, timing, handoff load, sales' verdicts."""
    first = first_mqls(outcome)
    per_week: Counter[str] = Counter(week_of(m.at) for m in outcome.mqls)
    per_tier: Counter[str] = Counter(m.tier for m in outcome.mqls)
    per_week_tier: dict[str, Counter[str]] = defaultdict(Counter)
    for m in outcome.mqls:
        per_week_tier[week_of(m.at)][m.tier] += 1
    hours_to_mql = [(m.at - m.first_touch_at).total_seconds() / 3600 for m in first.values()]
    per_team: Counter[str] = Counter(h.team for h in outcome.handoffs)
    per_rep: Counter[str] = Counter(h.rep_id or "(queued)" for h in outcome.handoffs)
    per_hour: Counter[str] = Counter(
        h.at.replace(minute=0, second=0, microsecond=0).isoformat() for h in outcome.handoffs
    )
    capacity = {rep.id: rep.capacity for team in playbook.routing.teams for rep in team.reps}
    queued = [h for h in outcome.handoffs if h.assigned_at != h.at]
    waits = [
        (h.assigned_at - h.at).total_seconds() / 60 for h in queued if h.assigned_at is not None
    ]
    return {
        "events": outcome.events,
        "leads": len(outcome.stages),
        "mqls": len(outcome.mqls),
        "leads_qualified": len(first),
        "mqls_per_week": dict(sorted(per_week.items())),
        "mqls_per_tier": dict(per_tier),
        "mqls_per_week_and_tier": {w: dict(c) for w, c in sorted(per_week_tier.items())},
        "hours_first_touch_to_mql": _quantiles(hours_to_mql),
        "handoffs_per_team": dict(per_team),
        "handoffs_per_rep": {
            rep: {"handoffs": n, "capacity": capacity.get(rep)}
            for rep, n in sorted(per_rep.items())
        },
        "peak_handoffs_per_hour": max(per_hour.values(), default=0),
        "queued": len(queued),
        "never_assigned": sum(1 for h in queued if h.assigned_at is None),
        "queue_wait_minutes": _quantiles(waits),
        "sales": _sales(first, judged, outcome),
        "after_handoff": after_handoff(outcome),
    }


def after_handoff(outcome: Outcome) -> dict[str, Any]:
    """What the clocks and the after-handoff policies did: tier raises, breaches, the manager
    queue, stale handoffs, and the handoffs closed by a policy by reason and by policy (as the
    live funnel counts them: every rejection, and each recycle by the manager queue or stale)."""
    kinds: Counter[str] = Counter(e.kind for e in outcome.clock_events)
    by_reason: Counter[str] = Counter()
    by_policy: Counter[str] = Counter()
    for e in outcome.clock_events:
        if e.kind == "recycled":
            reason, policy = e.detail.rsplit("/", 1)
            by_reason[reason] += 1
            by_policy[policy] += 1
    return {
        "tier_raises": kinds["tier_raised"],
        "accept_breaches": kinds["sla_breached"],
        "reassigned": kinds["reassigned"],
        "escalated": kinds["escalated"],
        "manager_queue_warnings": kinds["manager_queue_warning"],
        "manager_queue_breaches": kinds["manager_queue_breached"],
        "stale_reminders": kinds["stale_reminder"],
        "revisited": kinds["revisited"],
        "suppressed": kinds["suppressed"],
        "recycled_by_reason": dict(sorted(by_reason.items())),
        "recycled_by_policy": dict(sorted(by_policy.items())),
    }


def _sales(
    first: dict[str, Qualification], judged: dict[str, Judgement], outcome: Outcome
) -> dict[str, Any]:
    """How the playbook treats the leads sales already judged."""
    mql_judged = {k: j for k, j in judged.items() if outcome.lead_of(k) in first}
    accepted = sum(1 for j in mql_judged.values() if j.accepted)
    converted = sum(1 for j in mql_judged.values() if j.converted_to)
    rejected: Counter[str] = Counter(
        j.rejected_reason or "(none)" for j in mql_judged.values() if j.rejected_reason is not None
    )
    missed, delayed = [], []
    for key, j in judged.items():
        if not j.converted_to:
            continue
        mql = first.get(outcome.lead_of(key))
        if mql is None:
            missed.append(key)
        elif mql.at > j.handed_off_at:
            delayed.append(
                {
                    "lead": key,
                    "hours_later": round((mql.at - j.handed_off_at).total_seconds() / 3600, 2),
                }
            )
    return {
        "judged_leads": len(judged),
        "judged_leads_that_qualify": len(mql_judged),
        "accepted": accepted,
        "converted": converted,
        "rejected_by_reason": dict(rejected),
        "accepted_share": round(accepted / len(mql_judged), 4) if mql_judged else None,
        "converted_share": round(converted / len(mql_judged), 4) if mql_judged else None,
        "converted_missed": sorted(missed),
        "converted_delayed": delayed,
    }


def compare(
    baseline: Outcome,
    candidate: Outcome,
    baseline_playbook: Playbook,
    candidate_playbook: Playbook,
    judged: dict[str, Judgement],
) -> dict[str, Any]:
    """Side by side: each playbook's numbers and the leads that qualify under only one."""
    a, b = first_mqls(baseline), first_mqls(candidate)

    def sample(keys: set[str], mqls: dict[str, Qualification]) -> list[dict[str, Any]]:
        return [
            {
                "lead": key,
                "at": mqls[key].at.isoformat(),
                "score": mqls[key].score,
                "tier": mqls[key].tier,
                "explanation": [{"rule": r, "points": p} for r, p in mqls[key].explanation],
            }
            for key in sorted(keys)[:SAMPLE]
        ]

    only_a, only_b = set(a) - set(b), set(b) - set(a)
    return {
        "baseline": summarise(baseline, baseline_playbook, judged),
        "candidate": summarise(candidate, candidate_playbook, judged),
        "only_baseline": {"count": len(only_a), "sample": sample(only_a, a)},
        "only_candidate": {"count": len(only_b), "sample": sample(only_b, b)},
        "both": len(set(a) & set(b)),
        "mql_threshold": {
            "baseline": baseline_playbook.taxonomy.mql_threshold,
            "candidate": candidate_playbook.taxonomy.mql_threshold,
        },
        # Fit and engagement floors beside the threshold (taxonomy.qualification).
        "qualification": {
            "baseline": baseline_playbook.taxonomy.qualification.model_dump(),
            "candidate": candidate_playbook.taxonomy.qualification.model_dump(),
        },
    }


@dataclass(frozen=True)
class Band:
    """Sales' verdicts on the handoffs whose score fell in [low, low + width)."""

    low: int
    handoffs: int
    accepted: int
    converted: int


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def band_row(band: str, low: int, judged: list[Judgement]) -> dict[str, Any]:
    """Acceptance and conversion of one band's judged handoffs (a calibration table's row)."""
    accepted = sum(j.accepted for j in judged)
    converted = sum(1 for j in judged if j.converted_to)
    return {
        "band": band,
        "low": low,
        "handoffs": len(judged),
        "accepted": accepted,
        "acceptance_rate": round(accepted / len(judged), 4),
        "acceptance_95": wilson(accepted, len(judged)),
        "converted": converted,
        "conversion_rate": round(converted / len(judged), 4),
    }


def calibrate(
    judged: dict[str, Judgement],
    *,
    band_width: int = 10,
    accept_goal: float = 0.6,
    weeks: float | None = None,
    weekly_capacity: int | None = None,
) -> dict[str, Any]:
    """Acceptance and conversion by score band, and the lowest threshold meeting the goal.

    The goal: at least `accept_goal` of the handoffs at or above the threshold accepted
    (judged on the Wilson interval's lower bound, so thin evidence does not pass); with
    `weekly_capacity`, also no more handoffs a week than sales can take.
    """
    bands: dict[int, list[Judgement]] = defaultdict(list)
    for j in judged.values():
        bands[(j.score // band_width) * band_width].append(j)
    rows = [band_row(f"{low}-{low + band_width - 1}", low, bands[low]) for low in sorted(bands)]
    suggestion: dict[str, Any] | None = None
    for row in rows:
        low = int(row["low"])
        above = [j for j in judged.values() if j.score >= low]
        acc = sum(j.accepted for j in above)
        low95, high95 = wilson(acc, len(above))
        per_week = len(above) / weeks if weeks else None
        fits = weekly_capacity is None or (per_week is not None and per_week <= weekly_capacity)
        if above and low95 >= accept_goal and fits:
            n = len(above)
            suggestion = {
                "mql_threshold": low,
                "handoffs_at_or_above": n,
                "acceptance_rate": round(acc / n, 4),
                "acceptance_95": [low95, high95],
                "handoffs_per_week": round(per_week, 1) if per_week is not None else None,
                "confidence": "high" if n >= 100 else "medium" if n >= 30 else "low",
            }
            break
    return {
        "bands": rows,
        "goal": {"accept_share_at_least": accept_goal, "weekly_capacity": weekly_capacity},
        "judged_handoffs": len(judged),
        "suggestion": suggestion,
        "note": (
            "Acceptance by band is measured on leads that were handed off under the playbook of "
            "the time; leads below the threshold then were never judged, so bands below it are "
            "empty and a lower threshold cannot be supported by this evidence."
        ),
    }
