"""A backtest's funnel by campaign, and the demo history that feeds it campaign data."""

import random
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from services.backtest.campaigns import campaign_breakdown
from services.backtest.demo import CAMPAIGNS, history, people, with_insights
from services.backtest.report import write_backtest
from services.backtest.run import backtest
from services.backtest.simulate import Judgement, decode, simulate
from services.handoff.insights import check_insight
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
END = datetime(2026, 11, 23, tzinfo=UTC)


def generated(count: int = 300, days: int = 28):
    native = TypeAdapter(NativeLeadEvent)
    raw = history(count, days, seed=5, end=END)
    return decode(native_to_cloud_event(native.validate_python(e), "api") for e in raw)


def test_the_demo_history_carries_campaigns_and_sales_insights_of_the_vocabulary():
    raw = history(200, 28, seed=5, end=END)
    campaigns = {e["touch"].get("campaign") for e in raw if "touch" in e}
    assert {c for *_, c, _ in CAMPAIGNS if c} | {"nurture"} <= campaigns
    firsts = {e["identity"]["external_ids"]["hubspot"]: e for e in reversed(raw)}
    assert all("touch" in e for e in firsts.values())  # each person's first activity
    book = parse_playbook(EXAMPLE)
    calls = [
        ("accept", {}),
        ("reject", {"reason": "no_budget"}),
        ("convert", {"converted_to": "customer"}),
    ]
    for action, body in with_insights(calls, "VP Sales", random.Random(1)):
        check_insight(body.get("tags"), body.get("note"), book)  # allowed, or it raises
        assert action != "convert" or float(body["amount"]) > 0
    assert len(people(5, random.Random(5))) == 5


def test_a_stricter_playbook_shows_which_campaigns_lose_mqls():
    events = generated()
    current = parse_playbook(EXAMPLE)
    stricter = parse_playbook(EXAMPLE.replace("mql_threshold: 50", "mql_threshold: 70"))
    a, b = simulate(events, current), simulate(events, stricter)
    lead = a.mqls[0]
    judged = {lead.lead_key: Judgement(lead.lead_key, lead.at, lead.score, True, None, "sql")}
    base = {g["key"]: g for g in campaign_breakdown(events, a, judged)}
    strict = {g["key"]: g for g in campaign_breakdown(events, b, judged)}
    assert sum(g["leads"] for g in base.values()) == len(a.stages)
    assert sum(g["mqls"] for g in base.values()) == len({a.lead_of(m.lead_key) for m in a.mqls})
    assert sum(g["mqls"] for g in strict.values()) < sum(g["mqls"] for g in base.values())
    assert all(strict.get(k, {}).get("mqls", 0) <= g["mqls"] for k, g in base.items())
    assert sum(g["sqls"] for g in base.values()) == 1
    assert sum(g["handoffs"] for g in base.values()) == 1


def test_the_backtest_report_has_the_campaign_table(tmp_path: Path):
    events = generated(120, 21)
    current = parse_playbook(EXAMPLE)
    stricter = parse_playbook(EXAMPLE.replace("mql_threshold: 50", "mql_threshold: 70"))
    result, scores = backtest(events, current, stricter)
    result["window"] = {"since": None, "until": None}
    text = write_backtest(result, tmp_path, scores).read_text()
    assert "## By campaign (first touch)" in text
    assert "| brand-search |" in text
