"""The reference subscriber run as a customer runs it, against the real Kafka."""

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.asyncapi import TOPICS, example_event
from shared.events import CloudEvent, derived_event_id
from shared.kafka import HANDOFFS
from tests.helpers import publish

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "handoff_todo.py"
TOPIC = next(t for t in TOPICS if t.name == HANDOFFS)


def handoff(kind: str, handoff_id: str, email: str, accept_in_min: float) -> CloudEvent:
    event = example_event(TOPIC, f"leadrouter.handoff.{kind}")
    accept_by = datetime.now(UTC) + timedelta(minutes=accept_in_min)
    return event.model_copy(
        update={
            "id": derived_event_id("test", kind, handoff_id),
            "subject": f"email:{email}",
            "data": {
                **event.data,
                "handoff_id": handoff_id,
                "lead_key": f"email:{email}",
                "email": email,
                "accept_by": accept_by.isoformat(),
            },
        }
    )


async def test_prints_the_reps_open_handoffs_with_countdowns(settings) -> None:
    await publish(
        settings,
        HANDOFFS,
        [
            handoff("assigned", "h1", "ana@acme.example", 4),
            handoff("assigned", "h2", "bo@beta.example", 30),
            handoff("rejected", "h2", "bo@beta.example", 30),
            handoff("assigned", "h3", "cy@gamma.example", 10),
        ],
    )
    run = subprocess.run(  # noqa: ASYNC221 - the subscriber is a separate program
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap",
            settings.kafka_bootstrap,
            "--topic",
            settings.topic(HANDOFFS),
            "--group",
            f"{settings.topic_namespace}-todo",
            "--rep",
            "rep-ben",
            "--refresh-s",
            "0.5",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].endswith("Ben Okafor: 2 open"), run.stdout
    assert "ana@acme.example" in lines[1] and re.search(r" [0-3]:\d\d left  accept", lines[1])
    assert "cy@gamma.example" in lines[2]
    assert "bo@beta.example" not in run.stdout  # rejected: off the list
