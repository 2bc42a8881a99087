"""The playbook's goals: what each team commits to per period, and what both share.

Marketing commits to a volume (MQLs) and a quality (the share of MQLs sales accepts); sales
to a speed (accept and contact SLA attainment); both share conversion, SQLs, pipeline and
revenue. A goal is measured over a calendar period (week from Monday, month, quarter) in
its time zone, optionally for one routing team or one tier.
"""

from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from shared.playbook.base import Section


class GoalMetric(StrEnum):
    """What a goal measures."""

    MQLS = "mqls"
    MQL_ACCEPTANCE_RATE = "mql_acceptance_rate"
    MQL_TO_SQL = "mql_to_sql"
    SQLS = "sqls"
    PIPELINE = "pipeline"
    REVENUE = "revenue"
    ACCEPT_SLA = "accept_sla"
    CONTACT_SLA = "contact_sla"


class GoalOwner(StrEnum):
    MARKETING = "marketing"
    SALES = "sales"
    BOTH = "both"


class GoalPeriod(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


# Counts add up over the period (expected grows with time); rates hold throughout it.
COUNT_METRICS = frozenset(
    {GoalMetric.MQLS, GoalMetric.SQLS, GoalMetric.PIPELINE, GoalMetric.REVENUE}
)
RATE_METRICS = frozenset(set(GoalMetric) - COUNT_METRICS)
MONEY_METRICS = frozenset({GoalMetric.PIPELINE, GoalMetric.REVENUE})

# Whose commitment a metric is when the playbook does not say.
DEFAULT_OWNER = {
    GoalMetric.MQLS: GoalOwner.MARKETING,
    GoalMetric.MQL_ACCEPTANCE_RATE: GoalOwner.MARKETING,
    GoalMetric.MQL_TO_SQL: GoalOwner.BOTH,
    GoalMetric.SQLS: GoalOwner.BOTH,
    GoalMetric.PIPELINE: GoalOwner.BOTH,
    GoalMetric.REVENUE: GoalOwner.BOTH,
    GoalMetric.ACCEPT_SLA: GoalOwner.SALES,
    GoalMetric.CONTACT_SLA: GoalOwner.SALES,
}


class Goal(Section):
    """One commitment: a target for a metric per period, owned by marketing, sales or both."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Stable name (events, URLs)")
    name: str | None = Field(None, description="What the board shows; default from the metric")
    metric: GoalMetric
    owner: GoalOwner | None = Field(None, description="Default: marketing, sales or both by metric")
    period: GoalPeriod = GoalPeriod.MONTH
    target: float = Field(gt=0, description="A count or amount per period, or a rate in (0, 1]")
    team: str | None = Field(None, description="Only handoffs routed to this team")
    tier: str | None = Field(None, description="Only leads of this tier")
    pace: Literal["linear", "working_days"] = Field(
        "linear", description="How the expected figure grows: evenly, or on Monday to Friday"
    )
    timezone: str = "UTC"
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z]{3}$",
        description="pipeline, revenue: the ISO 4217 currency counted (default: the closed "
        "loop's reporting currency); amounts in other currencies are not converted",
    )
    at_risk_below: float = Field(
        1.0, gt=0, le=1, description="At risk when the projection falls below this share"
    )
    off_track_below: float = Field(
        0.75, gt=0, le=1, description="Off track when the projection falls below this share"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "Goal":
        if self.metric in RATE_METRICS and self.target > 1:
            raise ValueError(f"{self.metric} is a rate: target must be at most 1 (e.g. 0.8)")
        if self.metric in MONEY_METRICS and self.currency is None:
            raise ValueError(
                f"a {self.metric} goal needs a currency (or closed_loop.reporting_currency)"
            )
        if self.off_track_below > self.at_risk_below:
            raise ValueError("off_track_below must not exceed at_risk_below")
        return self

    @property
    def owned_by(self) -> GoalOwner:
        """The owner, as given or by metric."""
        return self.owner or DEFAULT_OWNER[self.metric]

    @property
    def title(self) -> str:
        """The name the board and the report show."""
        return self.name or f"{self.metric.replace('_', ' ')} per {self.period}"


def with_reporting_currency(data: Any) -> Any:
    """Raw playbook data whose pipeline and revenue goals default to the reporting currency."""
    if not isinstance(data, dict) or not isinstance(data.get("goals"), list):
        return data
    loop = data.get("closed_loop")
    currency = loop.get("reporting_currency") if isinstance(loop, dict) else None
    if currency is None:
        return data
    goals = [
        {**g, "currency": currency}
        if isinstance(g, dict) and g.get("metric") in MONEY_METRICS and "currency" not in g
        else g
        for g in data["goals"]
    ]
    return {**data, "goals": goals}


def check_goals(goals: list[Goal], teams: set[str], tiers: set[str]) -> None:
    """Raise ValueError for goals that repeat an id or name an unknown team or tier."""
    ids = [g.id for g in goals]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"goal ids must be unique; repeated: {repeated}")
    for goal in goals:
        if goal.team is not None and goal.team not in teams:
            raise ValueError(f"goal {goal.id} names unknown team {goal.team!r}")
        if goal.tier is not None and goal.tier not in tiers:
            raise ValueError(f"goal {goal.id} names unknown tier {goal.tier!r}")
