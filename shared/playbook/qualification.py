"""The MQL definition beyond the total: fit and engagement each have a floor of their own.

HubSpot scores fit and engagement with separate thresholds and Marketo keeps a lead grade
beside the score: a person with no fit at all should not qualify on behaviour alone. The rule
is pure and lives in the playbook so that scoring, `playbook backtest` and `playbook calibrate`
(which run the same scoring core) apply one definition.
"""

from pydantic import Field

from shared.playbook.base import Section


class Qualification(Section):
    """What an MQL needs besides `mql_threshold` on the total (none by default)."""

    min_fit: float | None = Field(
        None, description="The fit score (who the lead is) must reach this too"
    )
    min_behaviour: float | None = Field(
        None, description="The behaviour score (what the lead did) must reach this too"
    )


def qualifies(
    total: float, fit: float, behaviour: float, threshold: float, rule: Qualification
) -> bool:
    """Whether a score makes an MQL: the total at the threshold, and fit and engagement each
    at their own floor when the playbook sets one."""
    if total < threshold:
        return False
    if rule.min_fit is not None and fit < rule.min_fit:
        return False
    return rule.min_behaviour is None or behaviour >= rule.min_behaviour
