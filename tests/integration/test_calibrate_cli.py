"""`leadrouter playbook calibrate` through the command line, on handoff history recorded on
Kafka: the MQL threshold alone cannot meet the accept goal when sales turns down the leads
without fit, and the report suggests the fit floor that would."""

import asyncio
import json
import sys
from datetime import timedelta

import pytest

from shared.events import CloudEvent, ExplanationLine, HandoffData
from shared.kafka import HANDOFFS
from shared.settings import REPO_ROOT
from tests.helpers import T0, publish

pytestmark = pytest.mark.integration


def handoff_event(kind: str, lead: str, at_minutes: int, **data) -> CloudEvent:
    return CloudEvent(
        id=f"{kind}-{lead}",
        source="leadrouter/handoff",
        type=f"leadrouter.handoff.{kind}",
        time=T0 + timedelta(minutes=at_minutes),
        subject=lead,
        data=HandoffData(
            handoff_id=f"h-{lead}",
            lead_key=lead,
            rep_id="rep-ana",
            score=60,
            stage="mql",
            routing_reason="rule sales",
            **data,
        ).model_dump(mode="json"),
    )


def recorded_history() -> list[CloudEvent]:
    """Forty handoffs without fit (behaviour alone), 2 accepted; forty from large companies
    (fit 20), 36 accepted and 10 converted. All scored 60."""
    events = []
    for i in range(80):
        lead, fitting = f"email:p{i}@x.example", i >= 40
        explanation = [ExplanationLine(rule="behaviour:demo_request", points=40)]
        if fitting:
            explanation.append(ExplanationLine(rule="fit:large_company", points=20))
        else:
            explanation.append(ExplanationLine(rule="behaviour:form_submit", points=20))
        events.append(
            handoff_event("assigned", lead, i, status="assigned", explanation=explanation)
        )
        accepted = i % 20 < 18 if fitting else i in (0, 1)
        if accepted:
            events.append(handoff_event("accepted", lead, i + 100, status="accepted"))
        else:
            events.append(
                handoff_event("rejected", lead, i + 100, status="rejected", reason="not_a_fit")
            )
        if fitting and accepted and i % 4 == 0:
            events.append(
                handoff_event("converted", lead, i + 200, status="converted", converted_to="sql")
            )
    return events


async def test_calibrate_suggests_a_fit_floor_from_the_recorded_history(settings, tmp_path):
    await publish(settings, HANDOFFS, recorded_history())
    out = tmp_path / "calibration"
    env = {
        "PATH": "/usr/bin:/bin",
        "LEADROUTER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LEADROUTER_DATABASE_URL": settings.database_url,
        "LEADROUTER_TOPIC_NAMESPACE": settings.topic_namespace,
        "LEADROUTER_PLAYBOOK": str(REPO_ROOT / "deploy" / "playbook.example.yaml"),
    }
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "services.cli", "playbook", "calibrate", "--out", str(out)),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(command.communicate(), 120)
    stderr = err.decode()
    assert command.returncode == 0, stderr
    assert "80 judged handoffs; suggested MQL threshold: none meets the goal" in stderr
    assert "suggested min_fit: 10" in stderr
    result = json.loads((out / "calibration.json").read_text())
    assert result["suggestion"] is None  # every handoff scored 60: 38 of 80 accepted
    fit = result["fit"]
    assert [(b["band"], b["handoffs"], b["accepted"], b["converted"]) for b in fit["bands"]] == [
        ("0 to 9", 40, 2, 0),
        ("20 to 29", 40, 36, 10),
    ]
    assert fit["current_min_fit"] is None
    assert fit["suggestion"]["min_fit"] == 10  # no evidence on 10-19: not dropped
    assert fit["suggestion"]["handoffs_dropped"] == 40
    assert fit["suggestion"]["converted_dropped"] == 0
    report = (out / "calibration.md").read_text()
    assert "min_fit **10**" in report
    assert "| 0 to 9 | 40 | 2 | 5% " in report
