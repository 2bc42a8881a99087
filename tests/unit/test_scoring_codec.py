"""The behaviour record's row form: archived cap periods stay packed until the core needs them."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.scoring.codec import SealedArchive, decode_behaviour, encode_behaviour
from services.scoring.core import LIVE_PERIODS, LeadState, all_periods, apply_activity
from shared import jsoncodec
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KINDS = ["demo_request", "form_submit", "pricing_page_view", "email_open", "page_view"]


def activity(kind: str, minutes: int) -> LeadActivityData:
    return LeadActivityData(
        identity=Identity(email="ana@acme.example"),
        activity=Activity(type=kind, occurred_at=T0 + timedelta(minutes=minutes)),
    )


def long_history() -> LeadState:
    """Thirty days of activity every six hours: every capped rule has archived periods."""
    state = LeadState(lead_key="email:ana@acme.example")
    for i in range(120):
        state, _ = apply_activity(state, activity(KINDS[i % 5], i * 6 * 60), f"e{i}", PLAYBOOK)
    return state


def through_the_row(doc: dict) -> dict:
    return jsoncodec.loads(jsoncodec.dumps(doc))


def test_an_archive_read_and_not_opened_goes_back_as_the_same_text():
    state = long_history()
    written = jsoncodec.dumps(encode_behaviour(state.behaviour))
    read = decode_behaviour(jsoncodec.loads(written))
    sealed = [t.archive for t in read.tallies.values() if t.archive]
    assert sealed and all(isinstance(a, SealedArchive) for a in sealed)  # not opened
    assert jsoncodec.dumps(encode_behaviour(read)) == written


def test_a_packed_archive_opens_to_the_periods_the_core_archived():
    state = long_history()
    read = decode_behaviour(through_the_row(encode_behaviour(state.behaviour)))
    for rule, tally in state.behaviour.tallies.items():
        assert len(tally.periods) <= LIVE_PERIODS
        assert all_periods(read.tallies[rule]) == all_periods(tally)
    # A late activity lands in an archived period: the core opens it, and the row packs it again.
    late, _ = apply_activity(
        replace(state, behaviour=read),
        activity("email_open", 61),
        "late",
        PLAYBOOK,
    )
    kept, _ = apply_activity(state, activity("email_open", 61), "late", PLAYBOOK)
    assert late.score == kept.score
    again = decode_behaviour(through_the_row(encode_behaviour(late.behaviour)))
    assert {r: all_periods(t) for r, t in again.tallies.items()} == {
        r: all_periods(t) for r, t in kept.behaviour.tallies.items()
    }
