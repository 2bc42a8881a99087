"""The lifecycle events scoring builds are what validating their data would give, byte for byte."""

import json
from datetime import UTC, datetime, timedelta, timezone

from pydantic_core import to_json

from services.scoring.core import LeadState, Score, Transition, apply_activity
from services.scoring.service import ScoringHandler, lifecycle_data
from shared.events import (
    Activity,
    CloudEvent,
    Identity,
    LeadActivityData,
    LifecycleData,
    SalesSignal,
)
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT
from shared.vocabulary import LifecycleTransition, Stage

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_each_lifecycle_event_equals_its_validated_form():
    handler = ScoringHandler(PLAYBOOK, "lead-events", "lead-lifecycle")
    state = LeadState(lead_key="email:ana@acme.example")
    seen = 0
    for i, kind in enumerate(["page_view", "pricing_page_view", "demo_request", "email_open"]):
        data = LeadActivityData(
            identity=Identity(email="ana@acme.example"),
            attributes={"company_size": 500, "country": "DE", "tags": ["a", {"b": None}]},
            activity=Activity(type=kind, occurred_at=T0 + timedelta(minutes=i)),
        )
        state, transitions = apply_activity(state, data, f"e{i}", PLAYBOOK, None)
        for event in handler._lifecycle(state, transitions, cause=f"e{i}", merged=["x:1"]):
            seen += 1
            raw = event.to_bytes()
            decoded = CloudEvent.from_bytes(raw)
            assert decoded.to_bytes() == raw
            validated = LifecycleData.model_validate(decoded.data)
            # As JSON text: 0 and 0.0 are equal as Python numbers but not on the wire.
            assert json.dumps(validated.model_dump(mode="json")) == json.dumps(event.data)
    assert seen >= 2  # became_lead and became_mql at least


def test_lifecycle_data_is_the_models_json_dump_byte_for_byte():
    """The same text as LifecycleData's JSON dump of the typed transition time, offsets,
    microseconds and number types included."""
    handler = ScoringHandler(PLAYBOOK, "lead-events", "lead-lifecycle")
    state = LeadState(lead_key="email:ana@acme.example")
    plus_two = timezone(timedelta(hours=2))
    seen = 0
    for i, kind in enumerate(["pricing_page_view", "demo_request", "email_open", "page_view"]):
        at = (T0 + timedelta(minutes=i, microseconds=7 * i)).astimezone(plus_two if i % 2 else UTC)
        data = LeadActivityData(
            identity=Identity(email="ana@acme.example"),
            attributes={"company_size": 500 + i, "score_hint": 0.0, "tags": ["a", {"b": None}]},
            activity=Activity(type=kind, occurred_at=at),
        )
        state, transitions = apply_activity(state, data, f"e{i}", PLAYBOOK, None)
        for event in handler._lifecycle(state, transitions, cause=f"e{i}", merged=["x:1"]):
            seen += 1
            model = LifecycleData.model_validate(event.data)
            expected = LifecycleData(
                **{
                    **model.model_dump(),
                    "qualifying_activity_at": next(
                        t.at for t in transitions if t.name == model.transition
                    ),
                }
            )
            assert to_json(event.data) == to_json(expected.model_dump(mode="json"))
            assert list(event.data) == list(LifecycleData.model_fields)
    assert seen >= 3


def test_a_signal_of_a_lead_read_from_its_row_is_the_models_json_dump():
    """A score as a row gives it back (whole-number points) and a signal transition."""
    at = T0 + timedelta(microseconds=120)
    state = LeadState(
        lead_key="email:ana@acme.example",
        email="ana@acme.example",
        attributes={"company_size": 500},
        stage=Stage.MQL,
        tier="hot",
        score=Score(30, 50, 80, (("fit:size", 30), ("behaviour:demo", 50))),
    )
    transition = Transition(
        LifecycleTransition.SIGNAL, Stage.MQL, Stage.MQL, at, signal="demo_request"
    )
    explanation = [{"rule": r, "points": p} for r, p in state.score.contributions]
    expected = LifecycleData(
        transition=transition.name,
        lead_key=state.lead_key,
        email=state.email,
        attributes=state.attributes,
        stage=transition.stage,
        score=state.score.total,
        fit_score=state.score.fit,
        behaviour_score=state.score.behaviour,
        tier=state.tier,
        previous_stage=transition.previous_stage,
        explanation=explanation,
        qualifying_activity_at=at,
        merged_keys=["x:1"],
        signal=SalesSignal(type="demo_request", at=at),
    ).model_dump(mode="json")
    built = lifecycle_data(state, transition, ["x:1"])
    assert to_json(built) == to_json(expected)
