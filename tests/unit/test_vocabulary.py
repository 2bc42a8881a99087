"""One vocabulary: the contract's words come from shared/vocabulary.py; the documents list them."""

from enum import StrEnum

import pytest
from pydantic import ValidationError

from shared.asyncapi import default_document
from shared.events import (
    FEEDBACK_ACTIONS,
    HANDOFF_KINDS,
    LIFECYCLE_TRANSITIONS,
    FeedbackData,
    HandoffData,
    LifecycleData,
)
from shared.playbook.taxonomy import STAGES
from shared.vocabulary import (
    ConversionStage,
    FeedbackAction,
    HandoffKind,
    HandoffStatus,
    LifecycleTransition,
    Stage,
)


def values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def test_event_types_and_playbook_stages_are_the_vocabulary():
    assert list(LIFECYCLE_TRANSITIONS) == values(LifecycleTransition)
    assert list(HANDOFF_KINDS) == values(HandoffKind)
    assert list(FEEDBACK_ACTIONS) == values(FeedbackAction)
    assert list(STAGES) == [s for s in values(Stage) if s != "erased"]
    assert all(type(name) is str for name in (*LIFECYCLE_TRANSITIONS, *STAGES))


def test_the_asyncapi_document_lists_the_allowed_values():
    schemas = default_document()["components"]["schemas"]
    assert schemas["Stage"]["enum"] == values(Stage)
    assert schemas["LifecycleTransition"]["enum"] == values(LifecycleTransition)
    assert schemas["HandoffStatus"]["enum"] == values(HandoffStatus)
    assert schemas["ConversionStage"]["enum"] == values(ConversionStage)
    lifecycle = schemas["LifecycleData"]["properties"]
    assert lifecycle["stage"]["$ref"].endswith("/Stage")
    assert lifecycle["transition"]["$ref"].endswith("/LifecycleTransition")
    assert schemas["HandoffData"]["properties"]["status"]["$ref"].endswith("/HandoffStatus")
    feedback = schemas["FeedbackData"]["properties"]["converted_to"]["anyOf"][0]
    assert feedback["enum"] == values(ConversionStage)


def test_a_word_outside_the_vocabulary_is_refused_on_the_topics_leadrouter_writes():
    with pytest.raises(ValidationError):
        LifecycleData(transition="became_mql", lead_key="k", stage="MQL", score=60)
    with pytest.raises(ValidationError):
        HandoffData.model_validate(
            {
                "handoff_id": "h",
                "status": "asigned",
                "lead_key": "k",
                "rep_id": None,
                "score": 60,
                "stage": "mql",
                "routing_reason": "r",
            }
        )


def test_on_the_wire_the_words_are_the_plain_strings_they_always_were():
    data = LifecycleData(
        transition=LifecycleTransition.BECAME_MQL, lead_key="k", stage=Stage.MQL, score=60
    )
    assert data.model_dump_json().startswith('{"transition":"became_mql","lead_key":"k"')
    assert '"stage":"mql"' in data.model_dump_json()


def test_feedback_from_tools_reads_any_stage_text_for_handoff_to_refuse():
    # Tools write the feedback topic: an unknown stage is refused by the handoff service
    # (logged and counted), not dead-lettered by decoding.
    assert FeedbackData(handoff_id="h", converted_to="won").converted_to == "won"
