"""The event contract: valid AsyncAPI, examples that validate, docs and released schemas in step."""

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.asyncapi import (
    TOPICS,
    asyncapi_document,
    breaking_changes,
    default_document,
    example_event,
    render_markdown,
)
from shared.settings import Settings
from tests.contract import contract_errors

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "contracts" / "validator"
RELEASED = ROOT / "contracts" / "asyncapi.v1.json"


def _parser_installed() -> None:
    """The official parser's packages, installed by `make test` (`make contract-validator`),
    as the tracking SDKs are by `make sdk-clients`."""
    if not (VALIDATOR / "node_modules" / ".package-lock.json").exists():
        pytest.fail("the AsyncAPI parser is not installed: run `make contract-validator`")


def test_the_document_is_valid_asyncapi_for_the_official_parser(tmp_path: Path) -> None:
    _parser_installed()
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(default_document()))
    run = subprocess.run(
        ["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "valid AsyncAPI 3.0.0" in run.stderr


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    _parser_installed()
    broken = copy.deepcopy(default_document())
    broken["channels"]["handoffs"]["messages"]["handoff.assigned"] = {
        "$ref": "#/components/messages/nothing-here"
    }
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(broken))
    run = subprocess.run(["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True)
    assert run.returncode == 1


def test_every_event_type_has_a_message_and_its_example_validates() -> None:
    document = default_document()
    for topic in TOPICS:
        for event_type in topic.types:
            event = example_event(topic, event_type)
            errors = contract_errors(
                document, f"leadrouter.{topic.name}.v1", event.to_bytes(), event.subject
            )
            assert errors == [], errors


def test_an_event_that_breaks_its_schema_is_caught() -> None:
    topic = next(t for t in TOPICS if t.name == "handoffs")
    event = json.loads(example_event(topic, "leadrouter.handoff.assigned").to_bytes())
    del event["data"]["routing_reason"]
    event["data"]["score"] = "high"
    errors = contract_errors(
        default_document(), "ns.handoffs.v1", json.dumps(event).encode(), event["subject"]
    )
    assert any("routing_reason" in e for e in errors) and any("/data/score" in e for e in errors)
    unknown = {**event, "type": "leadrouter.handoff.teleported"}
    assert contract_errors(
        default_document(), "ns.handoffs.v1", json.dumps(unknown).encode(), event["subject"]
    )
    # The Kafka key must be the subject (ordering per lead depends on it).
    good = example_event(topic, "leadrouter.handoff.assigned")
    assert contract_errors(default_document(), "ns.handoffs.v1", good.to_bytes(), "other")


def test_the_rendered_reference_in_docs_is_up_to_date() -> None:
    rendered = (ROOT / "docs" / "asyncapi.md").read_text()
    assert rendered == render_markdown(default_document()), (
        "docs/asyncapi.md is stale: python -m shared.asyncapi --markdown > docs/asyncapi.md"
    )


def test_no_breaking_change_against_the_released_contract() -> None:
    released = json.loads(RELEASED.read_text())
    assert breaking_changes(released, default_document()) == []


def _data(document: dict[str, Any], model: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][model]
    return schema


def test_removing_or_retyping_a_field_readers_use_is_breaking() -> None:
    released = default_document()
    removed = copy.deepcopy(released)
    del _data(removed, "HandoffData")["properties"]["accept_by"]
    assert any("/data/accept_by removed" in p for p in breaking_changes(released, removed))
    retyped = copy.deepcopy(released)
    _data(retyped, "HandoffData")["properties"]["score"] = {"type": "string"}
    assert any("/data/score may now be" in p for p in breaking_changes(released, retyped))
    renamed = copy.deepcopy(released)
    del renamed["components"]["messages"]["handoff.sla_warning"]
    assert any("handoff.sla_warning removed" in p for p in breaking_changes(released, renamed))


def test_adding_an_optional_field_is_not_breaking_but_requiring_one_of_writers_is() -> None:
    released = default_document()
    added = copy.deepcopy(released)
    _data(added, "HandoffData")["properties"]["deal_size"] = {"type": "integer"}
    _data(added, "FeedbackData")["properties"]["mood"] = {"type": "string"}
    assert breaking_changes(released, added) == []
    required = copy.deepcopy(released)
    _data(required, "FeedbackData")["required"].append("rep_id")
    assert any(
        "feedback.accept: /data/rep_id is now required" in p
        for p in breaking_changes(released, required)
    )


def test_every_service_serves_the_document_with_its_own_topic_names() -> None:
    from services.scoring.app import build_app

    settings = Settings(topic_namespace="staging", kafka_bootstrap="kafka.internal:9092")
    client = TestClient(build_app(settings))  # no `with`: the lifespan (Kafka) does not run
    document = client.get("/asyncapi.json").json()
    assert document == asyncapi_document(namespace="staging", bootstrap="kafka.internal:9092")
    assert document["channels"]["handoffs"]["parameters"]["namespace"]["default"] == "staging"
