"""The fault run's pure parts: the seeded stream, the fault schedule and the reconciliation."""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from harness import faults
from harness.reconcile import Observed, Record, in_arrival_order, reconcile
from harness.stream import StreamShape, expected_outcome, lead_key_of, lead_stream
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.events import CloudEvent
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

BASE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")


def test_the_stream_is_the_same_for_a_seed_and_differs_between_seeds():
    one = lead_stream(StreamShape(seed=3, events=500, base_time=BASE))
    assert one == lead_stream(StreamShape(seed=3, events=500, base_time=BASE))
    assert one != lead_stream(StreamShape(seed=4, events=500, base_time=BASE))


def test_the_stream_mixes_new_and_returning_leads_and_some_qualify():
    events = lead_stream(StreamShape(seed=1, events=5000, base_time=BASE))
    per_lead = Counter(lead_key_of(e) for e in events)
    returning = sum(n - 1 for n in per_lead.values())
    assert 0.6 < returning / len(events) < 0.8
    assert len({e["id"] for e in events}) == len(events)
    for event in events:  # every item is one ingest accepts
        NativeLeadEvent.model_validate(event)
    expected = expected_outcome(events, PLAYBOOK)
    assert sum(s.events_count for s in expected.leads.values()) == len(events)
    assert 0.05 < sum(expected.mqls.values()) / len(expected.leads) < 0.5


def test_the_schedule_injects_every_kind_each_round_inside_the_stream():
    schedule = faults.fault_schedule(seed=5, events=10_000, rounds=2, pause_s=8)
    assert schedule == faults.fault_schedule(seed=5, events=10_000, rounds=2, pause_s=8)
    assert Counter(f.kind for f in schedule) == {kind: 2 for kind in faults.ALL_KINDS}
    positions = [f.at_event for f in schedule]
    assert positions == sorted(positions)
    assert 500 <= positions[0] and positions[-1] <= 9000
    assert all(f.down_s == 8 for f in schedule if f.kind == faults.PAUSE_KAFKA)


# -- reconciliation ---------------------------------------------------------------------------


def _record(event: CloudEvent) -> Record:
    return Record.of(event.to_bytes())


def _handoff(kind, handoff_id, lead, accept_by, rep="rep-0"):
    data = {"handoff_id": handoff_id, "lead_key": lead, "rep_id": rep, "tier": "hot"}
    data["accept_by"] = accept_by.isoformat()
    return CloudEvent(
        id=f"{kind}-{handoff_id}-{accept_by.isoformat()}",
        source="leadrouter/handoff",
        type=f"leadrouter.handoff.{kind}",
        time=BASE,
        subject=lead,
        data=data,
    )


def _faithful(events):
    """What a correct system shows for `events`: an observation every check passes."""
    expected = expected_outcome(events, PLAYBOOK)
    lead_events = [native_to_cloud_event(NativeLeadEvent.model_validate(e), "api") for e in events]
    handoffs, handoff_events = [], []
    accept_by = BASE + timedelta(minutes=5)
    for lead in sorted(expected.mqls):
        handoffs.append((f"h-{lead}", lead))
        handoff_events += [
            _handoff("assigned", f"h-{lead}", lead, accept_by),
            _handoff("sla_warning", f"h-{lead}", lead, accept_by),
        ]
    unknown = CloudEvent(
        id="poison-1",
        source="chaos",
        type="unknown",
        time=BASE,
        subject="email:x@y.example",
        data={},
    )
    poison = [unknown.to_bytes(), b"\xffpoison"]
    observed = Observed(
        accepted=events,
        projection={k: (s.events_count, s.score.total, s.stage) for k, s in expected.leads.items()},
        handoffs=handoffs,
        topics={
            # Poison first: the check must not take the poison's source for ingest's.
            "lead-events": [Record.of(p) for p in poison] + [_record(e) for e in lead_events],
            "handoffs": [_record(e) for e in handoff_events],
            "lead-events.dlq": [Record.of(p) for p in poison],
            "handoffs.dlq": [],
        },
        overdue_timers=0,
        cutoff=accept_by - timedelta(minutes=1),  # the warnings were due, the breaches not
        poison=poison,
    )
    return observed, expected


@pytest.fixture(scope="module")
def stream():
    events = lead_stream(StreamShape(seed=2, events=400, base_time=BASE))
    assert expected_outcome(events, PLAYBOOK).mqls
    return events


def _failed(report):
    return {c.name for c in report.checks if not c.ok}


def test_a_faithful_run_passes(stream):
    observed, expected = _faithful(stream)
    report = reconcile(observed, expected, PLAYBOOK)
    assert _failed(report) == set(), report.render()
    assert report.figures["events lost"] == 0


def test_a_lost_event_and_a_double_count_are_seen(stream):
    observed, expected = _faithful(stream)
    leads = sorted(observed.projection)
    n, score, stage = observed.projection[leads[0]]
    observed.projection[leads[0]] = (n - 1, score, stage)
    n, score, stage = observed.projection[leads[1]]
    observed.projection[leads[1]] = (n + 1, score, stage)
    report = reconcile(observed, expected, PLAYBOOK)
    assert report.figures["events lost"] == 1
    assert report.figures["events counted twice"] == 1
    assert any("projection" in name for name in _failed(report))


def test_an_event_id_with_two_contents_and_a_202_missing_from_the_topic_are_seen(stream):
    observed, expected = _faithful(stream)
    records = observed.topics["lead-events"]
    changed = json.loads(records[-2].value)
    changed["data"]["activity"]["type"] = "demo_request"
    records[-1] = Record.of(json.dumps(changed).encode())  # records[-1]'s own event is gone
    report = reconcile(observed, expected, PLAYBOOK)
    assert _failed(report) == {
        "no event id published twice with different content",
        "every 202 is on the lead-events topic",
    }


def test_a_lead_assigned_twice_or_never_is_seen(stream):
    observed, expected = _faithful(stream)
    lead = observed.handoffs[0][1]
    observed.handoffs.append(("h-again", lead))
    assert "every lead that qualified was assigned exactly once" in _failed(
        reconcile(observed, expected, PLAYBOOK)
    )
    observed, expected = _faithful(stream)
    del observed.handoffs[0]
    assert "every lead that qualified was assigned exactly once" in _failed(
        reconcile(observed, expected, PLAYBOOK)
    )


def test_a_due_timer_that_did_not_fire_or_fired_twice_is_seen(stream):
    observed, expected = _faithful(stream)
    handoffs = observed.topics["handoffs"]
    warning = next(
        i for i, r in enumerate(handoffs) if json.loads(r.value)["type"].endswith("warning")
    )
    missing = handoffs.pop(warning)
    assert "every SLA timer that came due fired exactly once" in _failed(
        reconcile(observed, expected, PLAYBOOK)
    )
    twice = json.loads(missing.value)
    handoffs.append(missing)
    twice["id"] += "-again"
    handoffs.append(Record.of(json.dumps(twice).encode()))
    assert "every SLA timer that came due fired exactly once" in _failed(
        reconcile(observed, expected, PLAYBOOK)
    )


def test_a_good_event_in_a_dlq_is_seen(stream):
    observed, expected = _faithful(stream)
    observed.topics["lead-events.dlq"].append(observed.topics["lead-events"][-1])
    assert _failed(reconcile(observed, expected, PLAYBOOK)) == {
        "the DLQs hold only what was meant to be poison"
    }


def test_the_expected_outcome_follows_the_order_the_topic_holds_not_the_sending_order():
    events = lead_stream(StreamShape(seed=2, events=30, base_time=BASE))
    cloud = [native_to_cloud_event(NativeLeadEvent.model_validate(e), "api") for e in events]
    # The first request was refused with a 503 and retried: it lands after the second.
    records = [_record(e) for e in cloud[10:20] + cloud[:10] + cloud[:3] + cloud[20:]]
    arrived = in_arrival_order(events, records)
    assert [e["id"] for e in arrived] == [
        e["id"] for e in events[10:20] + events[:10] + events[20:]
    ]
