"""The reference subscriber's pure part: folding handoff events into a to-do list."""

import importlib.util
import json
from datetime import timedelta
from pathlib import Path

from shared.asyncapi import EXAMPLE_TIME, TOPICS, example_event

PATH = Path(__file__).resolve().parents[2] / "examples" / "handoff_todo.py"
spec = importlib.util.spec_from_file_location("handoff_todo", PATH)
assert spec and spec.loader
todo_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(todo_module)

HANDOFFS = next(t for t in TOPICS if t.name == "handoffs")


def event(kind: str, **data: object) -> dict:
    """A contract example of a handoff event (as JSON), with some data fields changed."""
    body = json.loads(example_event(HANDOFFS, f"leadrouter.handoff.{kind}").to_bytes())
    body["data"].update(data)
    return body


def test_assigned_leads_show_with_their_accept_countdown_most_urgent_first() -> None:
    todo: dict[str, dict] = {}
    todo_module.apply(todo, event("assigned"))
    later = (EXAMPLE_TIME + timedelta(minutes=50)).isoformat()
    todo_module.apply(
        todo, event("assigned", handoff_id="h2", email="bo@b.example", accept_by=later)
    )
    text = todo_module.render(todo, EXAMPLE_TIME + timedelta(minutes=2), rep="rep-ben")
    lines = text.splitlines()
    assert lines[0].endswith("Ben Okafor: 2 open")
    assert "3:00 left" in lines[1] and "accept" in lines[1] and "ana@acme.example" in lines[1]
    assert "48:00 left" in lines[2] and "bo@b.example" in lines[2]


def test_breach_then_acceptance_then_contact_moves_the_item_along_and_off_the_list() -> None:
    todo: dict[str, dict] = {}
    todo_module.apply(todo, event("assigned"))
    todo_module.apply(todo, event("sla_breached"))
    late = todo_module.render(todo, EXAMPLE_TIME + timedelta(minutes=6))
    assert "OVERDUE 1:00" in late and "[SLA breached]" in late
    todo_module.apply(todo, event("accepted"))
    accepted = todo_module.render(todo, EXAMPLE_TIME + timedelta(minutes=6))
    assert "9:00 left  call" in accepted
    todo_module.apply(todo, event("contacted"))
    assert "nothing to do" in todo_module.render(todo, EXAMPLE_TIME)


def test_reassignment_moves_the_lead_to_the_new_rep_and_queued_leads_are_nobodys() -> None:
    todo: dict[str, dict] = {}
    todo_module.apply(todo, event("assigned", rep_id="rep-chen", rep_name="Chen Wei"))
    todo_module.apply(todo, event("reassigned"))
    assert "nothing to do" in todo_module.render(todo, EXAMPLE_TIME, rep="rep-chen")
    assert "Ben Okafor: 1 open" in todo_module.render(todo, EXAMPLE_TIME, rep="rep-ben")
    todo_module.apply(todo, event("queued", handoff_id="h3"))
    assert len(todo) == 1
