"""Goal progress, a pure core: actual to date, expected to date, projection, gap and status.

Plain inputs (a playbook goal, what was counted in its period so far, and `now`); no clock,
no database. Counts (MQLs, SQLs, pipeline, revenue) add up over the period: expected to date
is the target times the share of the period gone (evenly, or Monday to Friday only), the
projection extends the pace so far to the period's end. Rates (acceptance, conversion, SLA
attainment) hold throughout: expected is the target, the projection is the rate so far.

A playbook change in the middle of a period: the goal in force at `now` applies to the
whole period, and what happened is counted by the events' own times (an SLA is judged by
the deadline the handoff was given when it was assigned). So a raised target raises the
expected figure at once, and the history already counted stays counted.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from shared.playbook.goals import COUNT_METRICS, Goal, GoalMetric, GoalPeriod


class GoalStatus(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
    MET = "met"
    MISSED = "missed"


# The funnel stage each metric measures: where a shortfall sits.
STAGE_OF = {
    GoalMetric.MQLS: "mql",
    GoalMetric.MQL_ACCEPTANCE_RATE: "accepted",
    GoalMetric.ACCEPT_SLA: "accepted",
    GoalMetric.CONTACT_SLA: "contacted",
    GoalMetric.MQL_TO_SQL: "sql",
    GoalMetric.SQLS: "sql",
    GoalMetric.PIPELINE: "opportunity",
    GoalMetric.REVENUE: "customer",
}


@dataclass(frozen=True)
class Period:
    """A goal's period: from `start` (inclusive) to `end` (exclusive)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Tally:
    """What was counted in the period so far: a count or amount, or a rate's two terms."""

    value: float
    out_of: float | None = None  # the rate's denominator; None for counts and amounts


@dataclass(frozen=True)
class GoalProgress:
    """A goal's standing at `at`."""

    goal_id: str
    title: str
    metric: str
    owner: str
    period: str
    team: str | None
    tier: str | None
    period_start: datetime
    period_end: datetime
    at: datetime
    target: float
    elapsed: float  # share of the period gone, by the goal's pace
    actual: float | None  # None: a rate with nothing to divide by yet
    expected: float
    projection: float | None
    gap: float | None  # actual - expected: negative is behind
    status: GoalStatus
    value: float
    out_of: float | None

    @property
    def stage(self) -> str:
        return STAGE_OF[GoalMetric(self.metric)]

    @property
    def shortfall(self) -> float:
        """How far behind as a share of what is expected (0 when not behind)."""
        if self.status is GoalStatus.MET or self.gap is None or not self.expected:
            return 0.0
        return max(0.0, -self.gap / self.expected)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status), "stage": self.stage}


def period_of(period: GoalPeriod | str, now: datetime, timezone: str = "UTC") -> Period:
    """The calendar period (week from Monday, month, quarter) in `timezone` holding `now`."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    if period == GoalPeriod.WEEK:
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    elif period == GoalPeriod.MONTH:
        first = day.replace(day=1)
        after = _add_months(first, 1)
    else:
        first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        after = _add_months(first, 3)
    return Period(_midnight(first, zone), _midnight(after, zone))


def previous_period(period: GoalPeriod | str, current: Period, timezone: str = "UTC") -> Period:
    """The period before `current`."""
    return period_of(period, current.start - timedelta(seconds=1), timezone)


def _add_months(first: date, months: int) -> date:
    index = first.month - 1 + months
    return date(first.year + index // 12, index % 12 + 1, 1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def elapsed_share(goal: Goal, period: Period, now: datetime) -> float:
    """The share of the period gone at `now`: of its time, or of its working days' time."""
    if now <= period.start:
        return 0.0
    if now >= period.end:
        return 1.0
    if goal.pace == "linear":
        return (now - period.start) / (period.end - period.start)
    zone = ZoneInfo(goal.timezone)
    total = _working_seconds(period.start, period.end, zone)
    return _working_seconds(period.start, now, zone) / total if total else 1.0


def _working_seconds(start: datetime, end: datetime, zone: ZoneInfo) -> float:
    """Seconds between two times that fall on Monday to Friday in `zone`."""
    seconds = 0.0
    day = start.astimezone(zone).date()
    while True:
        begin = _midnight(day, zone)
        if begin >= end:
            return seconds
        finish = _midnight(day + timedelta(days=1), zone)
        if day.weekday() < 5:
            seconds += max(0.0, (min(finish, end) - max(begin, start)).total_seconds())
        day += timedelta(days=1)


def progress(goal: Goal, tally: Tally, now: datetime, period: Period | None = None) -> GoalProgress:
    """A goal's actual, expected, projection, gap and status at `now` in its period."""
    period = period or period_of(goal.period, now, goal.timezone)
    share = elapsed_share(goal, period, now)
    ended = now >= period.end
    actual: float | None
    if goal.metric in COUNT_METRICS:
        actual = tally.value
        expected = goal.target * share
        projection: float | None = actual / share if share > 0 else actual
        if ended or actual >= goal.target:
            status = GoalStatus.MET if actual >= goal.target else GoalStatus.MISSED
        else:
            status = _pace(goal, projection / goal.target if projection is not None else 0.0)
        places = 2
    else:
        actual = tally.value / tally.out_of if tally.out_of else None
        expected = goal.target
        projection = actual
        if ended:
            met = actual is not None and actual >= goal.target
            status = GoalStatus.MET if met else GoalStatus.MISSED
        elif actual is None:
            status = GoalStatus.ON_TRACK  # nothing to judge yet
        else:
            status = _pace(goal, actual / goal.target)
        places = 4
    return GoalProgress(
        goal_id=goal.id,
        title=goal.title,
        metric=str(goal.metric),
        owner=str(goal.owned_by),
        period=str(goal.period),
        team=goal.team,
        tier=goal.tier,
        period_start=period.start,
        period_end=period.end,
        at=now,
        target=goal.target,
        elapsed=round(share, 4),
        actual=None if actual is None else round(actual, places),
        expected=round(expected, places),
        projection=None if projection is None else round(projection, places),
        gap=None if actual is None else round(actual - expected, places),
        status=status,
        value=tally.value,
        out_of=tally.out_of,
    )


def _pace(goal: Goal, ratio: float) -> GoalStatus:
    if ratio >= goal.at_risk_below:
        return GoalStatus.ON_TRACK
    if ratio >= goal.off_track_below:
        return GoalStatus.AT_RISK
    return GoalStatus.OFF_TRACK


def gap_stage(progresses: Iterable[GoalProgress]) -> str | None:
    """The funnel stage with the largest shortfall against what the goals imply (None: none)."""
    worst: dict[str, float] = {}
    for p in progresses:
        if p.shortfall > 0:
            worst[p.stage] = max(worst.get(p.stage, 0.0), p.shortfall)
    return max(worst, key=lambda stage: worst[stage]) if worst else None


def attainment(progresses: Iterable[GoalProgress]) -> dict[str, int]:
    """How many goals stand in each status (the backtest's and the report's summary)."""
    counts = {str(s): 0 for s in GoalStatus}
    for p in progresses:
        counts[str(p.status)] += 1
    return counts
