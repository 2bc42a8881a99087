from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.scoring import BECAME_MQL, STAGE_MQL, LeadState, apply_activity
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
POINTS = {r.activity: r.points for r in PLAYBOOK.scoring.behaviour}
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def activity(kind: str, minutes: int = 0, email: str = "ana@acme.example") -> LeadActivityData:
    return LeadActivityData(
        identity=Identity(email=email),
        activity=Activity(type=kind, occurred_at=T0 + timedelta(minutes=minutes)),
    )


def fold(kinds: list[str]) -> tuple[LeadState, list[str]]:
    state, names = LeadState(lead_key="email:ana@acme.example"), []
    for i, kind in enumerate(kinds):
        state, transitions = apply_activity(state, activity(kind, i), PLAYBOOK)
        names += [t.name for t in transitions]
    return state, names


def test_demo_request_and_form_make_an_mql_once():
    state, transitions = fold(["demo_request", "form_submit", "demo_request"])
    assert state.score == 100
    assert state.stage == STAGE_MQL
    assert transitions == [BECAME_MQL]
    assert state.explanation() == [
        {"rule": "behaviour:demo_request", "points": 80},
        {"rule": "behaviour:form_submit", "points": 20},
    ]


def test_unknown_activity_counts_but_scores_nothing():
    state, transitions = fold(["podcast_listen"])
    assert (state.score, state.events_count, transitions) == (0, 1, [])


def test_attributes_merge_and_last_activity_is_the_latest_event_time():
    state = LeadState(lead_key="k")
    late = LeadActivityData(
        identity=Identity(email="a@b.example"),
        attributes={"country": "DE"},
        activity=Activity(type="page_view", occurred_at=T0),
    )
    early = LeadActivityData(
        identity=Identity(email="a@b.example"),
        attributes={"company": "Acme"},
        activity=Activity(type="page_view", occurred_at=T0 - timedelta(days=1)),
    )
    state, _ = apply_activity(state, late, PLAYBOOK)
    state, _ = apply_activity(state, early, PLAYBOOK)
    assert state.attributes == {"country": "DE", "company": "Acme"}
    assert state.last_activity_at == T0


@given(st.lists(st.sampled_from(sorted(POINTS) + ["other"]), max_size=40))
def test_score_is_the_sum_of_its_explanation(kinds):
    state, transitions = fold(kinds)
    assert state.score == sum(c["points"] for c in state.explanation())
    assert state.score == sum(POINTS.get(k, 0) for k in kinds)
    assert transitions.count(BECAME_MQL) <= 1
    # Becoming an MQL happens exactly when some prefix of the stream reached the threshold.
    running, reached = 0, False
    for kind in kinds:
        running += POINTS.get(kind, 0)
        reached = reached or running >= PLAYBOOK.taxonomy.mql_threshold
    assert (BECAME_MQL in transitions) == reached
