"""Pure: a backtest's funnel by campaign (or source, medium, tier), the same breakdown as
GET /v1/funnel, so marketing sees which campaigns a playbook change would favour.

Each lead's touches are folded from its history as scoring folds them live; a lead counts
once, its first qualification under the playbook is its MQL (with the touches it had then),
and sales' recorded verdicts on the leads that qualify count as handoffs, acceptances,
rejections and conversions. Amounts are not in the history's events: no money here.
"""

from collections import defaultdict
from typing import Any

from services.backtest.compare import first_mqls
from services.backtest.simulate import HistoryEvent, Judgement, Outcome
from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy, HandoffRow, StageRow, breakdown
from services.scoring.touches import LeadTouches, add_touch, qualify

CONVERSION_TRANSITIONS = {
    "sql": ["became_sql"],
    "opportunity": ["became_sql", "became_opportunity"],
    "customer": ["became_sql", "became_opportunity", "became_customer"],
}


def campaign_breakdown(
    history: list[HistoryEvent],
    outcome: Outcome,
    judged: dict[str, Judgement],
    group_by: GroupBy = GroupBy.CAMPAIGN,
    model: AttributionModel = AttributionModel.FIRST_TOUCH,
) -> list[dict[str, Any]]:
    """The playbook's funnel per group, from the history it was run over."""
    mqls = first_mqls(outcome)
    steps: dict[str, list[HistoryEvent]] = defaultdict(list)
    for event in history:
        if event.activity is not None:
            steps[outcome.lead_of(event.subject)].append(event)
    touches: dict[str, LeadTouches] = {}
    at_mql: dict[str, LeadTouches] = {}
    for key, events in steps.items():
        current = LeadTouches()
        mql = mqls.get(key)
        for event in events:  # in event time
            if mql is not None and key not in at_mql and event.at > mql.at:
                at_mql[key] = qualify(current)
            assert event.activity is not None
            current = add_touch(current, event.activity.touch, event.at)
        if mql is not None and key not in at_mql:
            at_mql[key] = qualify(current)
        touches[key] = current
    stage_rows = [StageRow("became_lead", touches[k].as_dict()) for k in touches]
    stage_rows += [StageRow("became_mql", at_mql[k].as_dict()) for k in mqls if k in at_mql]
    handoff_rows = []
    for key, verdict in judged.items():
        lead = outcome.lead_of(key)
        if lead not in mqls:
            continue
        path = at_mql.get(lead, LeadTouches()).as_dict()
        tier = mqls[lead].tier
        handoff_rows.append(
            HandoffRow(
                path,
                None,
                tier,
                verdict.accepted,
                verdict.rejected_reason,
                verdict.converted_to,
                None,
            )
        )
        for transition in CONVERSION_TRANSITIONS.get(verdict.converted_to or "", []):
            stage_rows.append(StageRow(transition, path))
    return breakdown(group_by, model, stage_rows, handoff_rows, [])
