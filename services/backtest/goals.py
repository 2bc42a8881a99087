"""Goal attainment in a backtest: a playbook's goals, period by period, over its simulated outcome.

Pure: the simulated MQLs and handoffs of one playbook and sales' recorded verdicts go in,
each goal's progress at the end of each period the history covers comes out (met or missed;
the last, unfinished period as it stands at the history's end). What a playbook cannot
change, or the history cannot tell, is not simulated and says so: the speed of sales (accept
and contact SLAs) under different routing, and amounts (pipeline, revenue).
"""

from datetime import datetime
from typing import Any

from services.backtest.simulate import Judgement, Outcome
from services.handoff.goals import Period, Tally, attainment, period_of, progress
from shared.playbook import Playbook
from shared.playbook.goals import Goal, GoalMetric

NOT_SIMULATED = {
    GoalMetric.ACCEPT_SLA: "sales' speed under other routing is not in the history",
    GoalMetric.CONTACT_SLA: "sales' speed under other routing is not in the history",
    GoalMetric.PIPELINE: "amounts are not simulated",
    GoalMetric.REVENUE: "amounts are not simulated",
}


def goal_attainment(
    outcome: Outcome, playbook: Playbook, judged: dict[str, Judgement], end: datetime
) -> dict[str, Any]:
    """Each goal's figures per period from the outcome's first MQL to `end`, and a summary."""
    starts = [m.at for m in outcome.mqls] + [h.at for h in outcome.handoffs]
    goals: list[dict[str, Any]] = []
    for goal in playbook.goals:
        if goal.metric in NOT_SIMULATED:
            goals.append({"goal": goal.id, "not_simulated": NOT_SIMULATED[goal.metric]})
            continue
        periods = _periods(goal, min(starts), end) if starts else []
        rows = [
            progress(goal, tally(goal, outcome, judged, p), min(end, p.end), p) for p in periods
        ]
        goals.append(
            {
                "goal": goal.id,
                "title": goal.title,
                "target": goal.target,
                "periods": [
                    {
                        "start": r.period_start.isoformat(),
                        "actual": r.actual,
                        "projection": r.projection,
                        "status": str(r.status),
                    }
                    for r in rows
                ],
                "attainment": attainment(rows),
            }
        )
    return {"goals": goals}


def _periods(goal: Goal, first: datetime, end: datetime) -> list[Period]:
    out = [period_of(goal.period, first, goal.timezone)]
    while out[-1].end <= end:
        out.append(period_of(goal.period, out[-1].end, goal.timezone))
    return [p for p in out if p.start < end]


def tally(goal: Goal, outcome: Outcome, judged: dict[str, Judgement], period: Period) -> Tally:
    """What the simulated outcome counts for a goal in a period."""

    def inside(at: datetime) -> bool:
        return period.start <= at < period.end

    handoffs = [
        h
        for h in outcome.handoffs
        if inside(h.at)
        and (goal.team is None or h.team == goal.team)
        and (goal.tier is None or h.tier == goal.tier)
    ]
    if goal.metric == GoalMetric.MQLS:
        if goal.team is None and goal.tier is None:
            return Tally(len({outcome.lead_of(m.lead_key) for m in outcome.mqls if inside(m.at)}))
        return Tally(len(handoffs))
    by_lead = {outcome.lead_of(k): j for k, j in judged.items()}
    verdicts = [
        by_lead[outcome.lead_of(h.lead_key)]
        for h in handoffs
        if outcome.lead_of(h.lead_key) in by_lead
    ]
    if goal.metric == GoalMetric.MQL_ACCEPTANCE_RATE:
        decided = [v for v in verdicts if v.accepted or v.rejected_reason is not None]
        return Tally(sum(1 for v in decided if v.accepted), len(decided))
    converted = sum(1 for v in verdicts if v.converted_to)
    if goal.metric == GoalMetric.MQL_TO_SQL:
        return Tally(converted, len(verdicts))
    if goal.metric == GoalMetric.SQLS:
        return Tally(converted)
    raise ValueError(f"{goal.metric} is not simulated")
