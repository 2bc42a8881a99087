"""Goal attainment in a backtest: a candidate's goals period by period over its outcome."""

from datetime import UTC, datetime, timedelta

from services.backtest.compare import week_of
from services.backtest.goals import goal_attainment
from services.backtest.report import write_backtest
from services.backtest.run import backtest
from services.backtest.simulate import (
    Judgement,
    Outcome,
    Qualification,
    SimulatedHandoff,
    simulate,
)
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT
from tests.unit.test_backtest_simulate import generated, with_threshold

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
GOALS = """
goals:
  - { id: mqls, metric: mqls, period: week, target: 3 }
  - { id: acceptance, metric: mql_acceptance_rate, period: week, target: 0.5 }
  - { id: sqls, metric: sqls, period: week, target: 1 }
  - { id: accept, metric: accept_sla, period: week, target: 0.9 }
"""


def candidate():
    return parse_playbook(EXAMPLE.split("\n# Shared goals")[0] + GOALS)


def mql(key: str, at: datetime) -> tuple[Qualification, SimulatedHandoff]:
    return (
        Qualification(key, at, 90, "hot", at, ()),
        SimulatedHandoff(key, at, "sales", "rep-ana", "hot", at),
    )


def test_each_week_is_met_or_missed_and_what_cannot_be_simulated_says_so():
    week1 = datetime(2026, 11, 16, 10, tzinfo=UTC)  # a Monday
    week2 = week1 + timedelta(days=7)
    pairs = [mql(f"k{n}", week1 + timedelta(hours=n)) for n in range(3)]
    pairs += [mql("k3", week2), mql("k4", week2 + timedelta(hours=1))]
    outcome = Outcome(mqls=[q for q, _ in pairs], handoffs=[h for _, h in pairs])
    judged = {
        "k0": Judgement("k0", week1, 90, True, None, "sql"),
        "k1": Judgement("k1", week1, 90, False, "not_a_fit", None),
        "k3": Judgement("k3", week2, 90, False, "no_budget", None),
    }
    result = goal_attainment(outcome, candidate(), judged, week2 + timedelta(days=2))
    by_goal = {g["goal"]: g for g in result["goals"]}
    assert [(p["start"][:10], p["actual"], p["status"]) for p in by_goal["mqls"]["periods"]] == [
        ("2026-11-16", 3, "met"),
        ("2026-11-23", 2, "on_track"),  # the history ends on Wednesday: 2 by then, on pace
    ]
    assert [(p["actual"], p["status"]) for p in by_goal["acceptance"]["periods"]] == [
        (0.5, "met"),
        (0.0, "off_track"),
    ]
    assert [p["status"] for p in by_goal["sqls"]["periods"]] == ["met", "off_track"]
    assert by_goal["mqls"]["attainment"]["met"] == 1
    assert "not in the history" in by_goal["accept"]["not_simulated"]


def test_the_backtest_report_shows_the_candidates_goal_attainment(tmp_path):
    events = generated(120, 14)
    result, scores = backtest(events, with_threshold(50), candidate())
    weeks = result["goals"]["goals"][0]["periods"]
    # A lead counts once a week; the example's manager-queue clock recycles unworked leads
    # (nobody gives feedback in this history), and some qualify again in a later week.
    outcome = simulate(events, candidate())
    lead_weeks = {(outcome.lead_of(m.lead_key), week_of(m.at)) for m in outcome.mqls}
    assert len(weeks) >= 2 and sum(p["actual"] for p in weeks) == len(lead_weeks)
    assert len(lead_weeks) >= result["candidate"]["leads_qualified"]
    result["window"] = {"since": None, "until": None}
    report = write_backtest(result, tmp_path, scores).read_text()
    assert "## Goal attainment under the candidate" in report
    assert "accept_sla per week: not simulated" in report or "- accept: not simulated" in report
