"""The backtest understands the issue-24 playbook keys: fit and engagement floors on the MQL
definition, and routing to the existing owner."""

from datetime import UTC, datetime

from pydantic import TypeAdapter

from services.backtest.compare import compare
from services.backtest.demo import history
from services.backtest.simulate import decode, simulate
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.playbook import parse_playbook
from shared.settings import REPO_ROOT

EXAMPLE = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
END = datetime(2026, 11, 23, tzinfo=UTC)


def generated(people: int = 300, days: int = 28):
    native = TypeAdapter(NativeLeadEvent)
    raw = history(people, days, seed=5, end=END)
    return decode(native_to_cloud_event(native.validate_python(e), "api") for e in raw)


def test_a_fit_floor_qualifies_only_leads_with_fit_and_the_report_says_which_it_drops():
    events = generated()
    current = parse_playbook(EXAMPLE)
    strict = parse_playbook(
        EXAMPLE.replace("qualification: { min_fit: null,", "qualification: { min_fit: 15,")
    )
    a, b = simulate(events, current), simulate(events, strict)
    result = compare(a, b, current, strict, {})
    assert 0 < result["candidate"]["leads_qualified"] < result["baseline"]["leads_qualified"]
    dropped = {m.lead_key for m in a.mqls} - {m.lead_key for m in b.mqls}
    assert dropped and result["only_baseline"]["count"] == len(dropped)
    # Every lead the floor dropped had too little fit when it qualified before.
    for mql in a.mqls:
        if mql.lead_key in dropped:
            fit = sum(p for rule, p in mql.explanation if rule.startswith("fit:"))
            assert fit < 15
    assert result["qualification"]["candidate"] == {"min_fit": 15.0, "min_behaviour": None}


def test_the_backtest_gives_a_returning_account_to_its_existing_owner():
    events = generated()
    off = parse_playbook(EXAMPLE)
    on = parse_playbook(
        EXAMPLE.replace("existing_owner: { days: null }", "existing_owner: { days: 30 }")
    )
    plain, owned = simulate(events, off), simulate(events, on)
    assert len(plain.handoffs) == len(owned.handoffs)
    earlier: list[tuple[str, str, str]] = []  # lead, domain, rep of earlier handoffs
    kept = 0
    for h in owned.handoffs:
        domain = h.lead_key.rsplit("@", 1)[-1]
        if h.rule == "existing owner":
            assert any(
                rep == h.rep_id and (lead == h.lead_key or dom == domain)
                for lead, dom, rep in earlier
            )
            kept += 1
        if h.rep_id:
            earlier.append((h.lead_key, domain, h.rep_id))
    assert kept > 0
    assert all(h.rule != "existing owner" for h in plain.handoffs)
