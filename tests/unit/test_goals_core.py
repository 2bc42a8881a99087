"""The goals core: periods, pace, projection, gap, status and where the gap sits."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.handoff.goals import (
    GoalStatus,
    Period,
    Tally,
    elapsed_share,
    gap_stage,
    period_of,
    previous_period,
    progress,
)
from shared.playbook import PlaybookError, parse_playbook
from shared.playbook.goals import Goal, GoalMetric
from shared.settings import REPO_ROOT

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 22.5 of November's 30 days gone
EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()


def goal(**fields: object) -> Goal:
    return Goal.model_validate({"id": "g", "metric": "mqls", "target": 120, **fields})


def test_periods_are_calendar_weeks_months_and_quarters():
    assert period_of("week", MONDAY_NOON) == Period(
        datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    )
    assert period_of("month", MONDAY_NOON) == Period(
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert period_of("quarter", MONDAY_NOON) == Period(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    berlin = period_of("month", datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "Europe/Berlin")
    assert berlin.start == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)  # Nov 1st, 00:00 CET
    assert previous_period("month", period_of("month", MONDAY_NOON)).start == datetime(
        2026, 10, 1, tzinfo=UTC
    )


def test_a_count_behind_pace_is_at_risk_with_exact_figures():
    p = progress(goal(), Tally(81), MONDAY_NOON)
    assert (p.elapsed, p.actual, p.expected, p.projection, p.gap) == (0.75, 81, 90, 108, -9)
    assert p.status is GoalStatus.AT_RISK  # projected 108 of 120: 0.9 of the target


def test_working_days_pace_counts_monday_to_friday_only():
    p = progress(goal(pace="working_days"), Tally(81), MONDAY_NOON)
    # November 2026 has 21 working days; 15.5 of them are gone on the 23rd at noon
    assert p.elapsed == round(15.5 / 21, 4)
    assert p.expected == round(120 * 15.5 / 21, 2) == 88.57
    assert p.projection == round(81 / (15.5 / 21), 2) == 109.74
    assert p.status is GoalStatus.AT_RISK


def test_statuses_of_counts():
    assert progress(goal(), Tally(90), MONDAY_NOON).status is GoalStatus.ON_TRACK
    assert progress(goal(), Tally(60), MONDAY_NOON).status is GoalStatus.OFF_TRACK  # 80 of 120
    assert progress(goal(), Tally(120), MONDAY_NOON).status is GoalStatus.MET  # early
    end = datetime(2026, 12, 1, tzinfo=UTC)
    november = period_of("month", MONDAY_NOON)
    assert progress(goal(), Tally(119), end, november).status is GoalStatus.MISSED
    assert progress(goal(), Tally(119), end, november).expected == 120


def test_a_rate_holds_its_target_throughout():
    g = goal(metric="mql_acceptance_rate", target=0.8)
    p = progress(g, Tally(14, 20), MONDAY_NOON)
    assert (p.actual, p.expected, p.projection, p.gap) == (0.7, 0.8, 0.7, -0.1)
    assert p.status is GoalStatus.AT_RISK  # 0.875 of the target
    assert progress(g, Tally(0, 0), MONDAY_NOON).status is GoalStatus.ON_TRACK
    assert progress(g, Tally(0, 0), MONDAY_NOON).actual is None
    assert progress(g, Tally(16, 20), MONDAY_NOON).status is GoalStatus.ON_TRACK


def test_the_gap_sits_at_the_stage_with_the_largest_shortfall():
    mqls = progress(goal(), Tally(81), MONDAY_NOON)  # 10% behind
    sqls = progress(goal(id="s", metric="sqls", target=40), Tally(15), MONDAY_NOON)  # 50% behind
    sla = progress(goal(id="a", metric="accept_sla", target=0.9), Tally(9, 10), MONDAY_NOON)
    assert gap_stage([mqls, sqls, sla]) == "sql"
    assert gap_stage([mqls, sla]) == "mql"
    assert gap_stage([sla]) is None


def test_the_playbook_checks_goals():
    text = EXAMPLE + "\ngoals:\n  - { id: x, metric: accept_sla, target: 95 }\n"
    with pytest.raises(PlaybookError, match="is a rate"):
        parse_playbook(text)
    text = EXAMPLE + "\ngoals:\n  - { id: x, metric: mqls, target: 9, team: nobody }\n"
    with pytest.raises(PlaybookError, match="unknown team"):
        parse_playbook(text)
    assert [g.metric for g in parse_playbook(EXAMPLE).goals][:1] == [GoalMetric.MQLS]


times = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
goals = st.builds(
    goal,
    period=st.sampled_from(["week", "month", "quarter"]),
    pace=st.sampled_from(["linear", "working_days"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)


@given(goals, times, times)
def test_the_share_gone_grows_with_time_from_0_to_1(g, a, b):
    period = period_of(g.period, a, g.timezone)
    assert period.start <= a < period.end
    early, late = sorted((a, b))
    assert 0 <= elapsed_share(g, period, early) <= elapsed_share(g, period, late) <= 1
    assert elapsed_share(g, period, period.end) == 1


@given(goals, times, st.integers(0, 500))
def test_a_count_is_met_at_the_end_exactly_when_it_reached_the_target(g, now, count):
    period = period_of(g.period, now, g.timezone)
    p = progress(g, Tally(count), period.end + timedelta(seconds=1), period)
    assert p.status is (GoalStatus.MET if count >= g.target else GoalStatus.MISSED)
    assert p.expected == g.target
    running = progress(g, Tally(count), now, period)
    assert running.projection is not None and running.projection >= count
    if running.status is GoalStatus.ON_TRACK:
        assert running.projection >= g.target - 0.01


@given(times, st.integers(0, 50), st.integers(0, 50))
def test_more_done_never_worsens_a_status(now, done, more):
    order = [GoalStatus.OFF_TRACK, GoalStatus.AT_RISK, GoalStatus.ON_TRACK, GoalStatus.MET]
    g = goal(target=40)
    a, b = progress(g, Tally(done), now), progress(g, Tally(done + more), now)
    assert order.index(a.status) <= order.index(b.status)


def test_playbook_check_lists_the_goals_with_their_owners():
    from shared.playbook import summary

    lines = summary(parse_playbook(EXAMPLE)).splitlines()
    assert "Goal mqls-per-month (marketing): mqls 120 per month" in lines
    assert "Goal accept-sla (sales): accept_sla 0.95 per week" in lines


def test_money_goals_count_in_the_reporting_currency_or_their_own():
    book = parse_playbook(EXAMPLE)
    assert {g.id: g.currency for g in book.goals if g.metric == "pipeline"} == {
        "pipeline-per-quarter": "EUR"
    }
    implicit = EXAMPLE.replace(", currency: EUR }", " }")
    assert {g.currency for g in parse_playbook(implicit).goals if g.currency} == {"EUR"}
    with pytest.raises(PlaybookError, match="needs a currency"):
        parse_playbook(implicit.replace("reporting_currency: EUR", "reporting_currency: null"))
