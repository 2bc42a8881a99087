"""Reconcile what the system did with what it was sent. Pure: the run collects, this judges.

Everything here reads the external contract only (topics, the projection tables), so it
keeps working while the services' insides change.
"""

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from harness.stream import Expected
from shared.events import derived_event_id
from shared.playbook import Playbook

INGEST_SOURCE_PREFIX = "leadrouter/ingest/"


@dataclass(frozen=True)
class Record:
    """One record read from a topic: its event id (None if undecodable) and raw value."""

    event_id: str | None
    value: bytes

    @staticmethod
    def of(value: bytes) -> "Record":
        try:
            event_id = json.loads(value)["id"]
        except (ValueError, KeyError, TypeError):
            event_id = None
        return Record(event_id if isinstance(event_id, str) else None, value)


@dataclass(frozen=True)
class Observed:
    """What a run collected from the system after it settled."""

    accepted: list[dict[str, Any]]  # native events that got a 202
    projection: dict[str, tuple[int, int, str]]  # lead key -> (events_count, score, stage)
    handoffs: list[tuple[str, str]]  # (handoff_id, lead_key) rows
    topics: dict[str, list[Record]]  # short topic name ("lead-events", ...) -> records
    overdue_timers: int  # SLA timers due before `cutoff` that never fired
    cutoff: datetime  # the database's clock when the run stopped sending and settled
    poison: list[bytes]  # what the run wrote straight onto lead-events, meant for its DLQ


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def render(self) -> str:
        lines = [f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        width = max((len(k) for k in self.figures), default=0)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.figures.items()]
        return "\n".join(lines)


def reconcile(observed: Observed, expected: Expected, playbook: Playbook) -> Report:
    """Every check of the fault run, with the figures it prints."""
    report = Report()
    _accepted_on_topic(report, observed)
    _one_content_per_id(report, observed)
    _projection(report, observed, expected)
    _assignments(report, observed, expected)
    _sla_timers(report, observed, playbook)
    _dead_letters(report, observed)
    return report


def _ingest_sources(records: list[Record]) -> set[str]:
    """The source names ingest published under (it derives ids from source and caller id)."""
    return {
        source.removeprefix(INGEST_SOURCE_PREFIX)
        for source in (json.loads(r.value).get("source", "") for r in records if r.event_id)
        if source.startswith(INGEST_SOURCE_PREFIX)
    }


def in_arrival_order(accepted: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """The accepted events in the order the topic holds them (first copy of each), which is
    the order scoring saw each lead's events; those missing from the topic go last.

    A retried request lands after requests sent later, so this is not the sending order, and
    a lead's stage can depend on it (an activity judged after a later-dated unsubscribe).
    """
    sources = _ingest_sources(records)
    by_id = {derived_event_id(src, e["id"]): e for e in accepted for src in sources}
    ordered: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.event_id in by_id:
            ordered.setdefault(by_id[r.event_id]["id"], by_id[r.event_id])
    return [*ordered.values(), *(e for e in accepted if e["id"] not in ordered)]


def _accepted_on_topic(report: Report, observed: Observed) -> None:
    records = [r for r in observed.topics.get("lead-events", []) if r.event_id is not None]
    sources = _ingest_sources(records)
    on_topic = {r.event_id for r in records}
    missing = [
        e["id"]
        for e in observed.accepted
        if not any(derived_event_id(source, e["id"]) in on_topic for source in sources)
    ]
    report.check(
        "every 202 is on the lead-events topic",
        not missing,
        f"{len(observed.accepted) - len(missing)}/{len(observed.accepted)}"
        + (f"; missing e.g. {missing[:3]}" if missing else ""),
    )


def _one_content_per_id(report: Report, observed: Observed) -> None:
    conflicting: list[str] = []
    absorbed = 0
    for topic, records in observed.topics.items():
        contents: dict[str, set[bytes]] = defaultdict(set)
        for r in records:
            if r.event_id is not None:
                contents[r.event_id].add(r.value)
        conflicting += [f"{topic}:{i}" for i, values in contents.items() if len(values) > 1]
        duplicates = sum(1 for r in records if r.event_id is not None) - len(contents)
        if duplicates or topic in {"lead-events", "lead-lifecycle", "handoffs"}:
            report.figures[f"duplicate records on {topic}"] = duplicates
        if not topic.endswith(".dlq"):
            absorbed += duplicates
    report.figures["duplicates absorbed (records seen again, by event id)"] = absorbed
    report.check(
        "no event id published twice with different content",
        not conflicting,
        f"{len(conflicting)} ids" + (f", e.g. {conflicting[:3]}" if conflicting else ""),
    )


def _projection(report: Report, observed: Observed, expected: Expected) -> None:
    want = {k: (s.events_count, s.score.total, s.stage) for k, s in expected.leads.items()}
    got = observed.projection
    lost = sum(max(0, n - got.get(k, (0, 0, ""))[0]) for k, (n, _, _) in want.items())
    doubled = sum(max(0, n - want.get(k, (0, 0, ""))[0]) for k, (n, _, _) in got.items())
    wrong = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    report.figures["events lost"] = lost
    report.figures["events counted twice"] = doubled
    report.check(
        "every accepted event is in the projection exactly once (vs the pure scoring core)",
        not wrong and lost == 0 and doubled == 0,
        f"{len(got)} leads, {sum(n for n, _, _ in got.values())} events counted, "
        f"{len(wrong)} leads differ"
        + (f", e.g. {[(k, want.get(k), got.get(k)) for k in wrong[:3]]}" if wrong else ""),
    )


def _handoff_events(observed: Observed) -> list[dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for r in observed.topics.get("handoffs", []):
        if r.event_id is not None:
            events[r.event_id] = json.loads(r.value)
    return list(events.values())


def _assignments(report: Report, observed: Observed, expected: Expected) -> None:
    per_lead_db = Counter(lead for _, lead in observed.handoffs)
    assigned: dict[str, set[str]] = defaultdict(set)
    for event in _handoff_events(observed):
        if event["type"].endswith(".assigned"):
            assigned[event["data"]["lead_key"]].add(event["data"]["handoff_id"])
    per_lead_topic = Counter({lead: len(ids) for lead, ids in assigned.items()})
    want = +expected.mqls
    report.figures["leads that qualified"] = sum(want.values())
    report.check(
        "every lead that qualified was assigned exactly once",
        per_lead_db == want and per_lead_topic == want,
        f"{sum(per_lead_db.values())} handoffs in the database, "
        f"{sum(per_lead_topic.values())} assigned events; "
        f"missing {sorted((want - per_lead_db).keys())[:3]}, "
        f"extra {sorted((per_lead_db - want).keys())[:3]}",
    )


def _sla_timers(report: Report, observed: Observed, playbook: Playbook) -> None:
    """Each assignment's warning and breach fired once if due before the cutoff, never twice."""
    share_left = 1 - playbook.sla.warning_at
    fired: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    episodes: set[tuple[str, str, str]] = set()  # (handoff, accept_by, tier)
    for event in _handoff_events(observed):
        data, kind = event["data"], event["type"].rsplit(".", 1)[-1]
        if data.get("accept_by") is None:
            continue
        episode = (data["handoff_id"], data["accept_by"])
        if kind in {"assigned", "reassigned"} and data.get("rep_id"):
            episodes.add((*episode, data["tier"]))
        if kind in {"sla_warning", "sla_breached"}:
            fired[(*episode, kind)].add(event["id"])
    late, twice = [], []
    for handoff_id, accept_by, tier in episodes:
        due = datetime.fromisoformat(accept_by)
        minutes = playbook.sla.tiers[tier].accept_minutes
        for kind, at in (
            ("sla_warning", due - timedelta(minutes=minutes * share_left)),
            ("sla_breached", due),
        ):
            n = len(fired.get((handoff_id, accept_by, kind), ()))
            if n > 1:
                twice.append((handoff_id, kind))
            elif n == 0 and at <= observed.cutoff:
                late.append((handoff_id, kind))
    came_due = sum(1 for ids in fired.values() for _ in ids)
    report.figures["SLA timers fired (warnings and breaches)"] = came_due
    report.check(
        "every SLA timer that came due fired exactly once",
        not late and not twice and observed.overdue_timers == 0,
        f"{len(episodes)} assignments; {len(late)} due but not fired, {len(twice)} fired twice, "
        f"{observed.overdue_timers} timer rows overdue"
        + (f", e.g. {(late + twice)[:3]}" if late or twice else ""),
    )


def _dead_letters(report: Report, observed: Observed) -> None:
    """Each poison record reached lead-events.dlq and nothing else reached any DLQ.

    A record may be there twice (an outbox relay that crashed after publishing republishes):
    that is at-least-once delivery of the DLQ, counted among the duplicates, not an error.
    """
    dlqs = {t: {r.value for r in rs} for t, rs in observed.topics.items() if t.endswith(".dlq")}
    want = set(observed.poison)
    got = dlqs.pop("lead-events.dlq", set())
    others = {t: len(values) for t, values in dlqs.items() if values}
    unexpected = [json.loads(v).get("id") if v.startswith(b"{") else v[:40] for v in got - want]
    report.figures["poison records dead-lettered"] = len(got & want)
    report.check(
        "the DLQs hold only what was meant to be poison",
        got == want and not others,
        f"lead-events.dlq has {len(got & want)}/{len(want)} poison records"
        + (f", {len(unexpected)} others, e.g. {unexpected[:3]}" if unexpected else "")
        + (f"; other DLQs: {others}" if others else ""),
    )
