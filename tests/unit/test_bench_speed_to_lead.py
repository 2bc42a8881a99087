"""The speed-to-lead probe splits each probe into hops in pipeline order, and the tail note
names the hop that adds most to the slowest probes (no timing here: made-up marks)."""

from bench.probe import MARKS, hops
from bench.scenarios.speed_to_lead import figures, tail_notes


def probe(posted: float, scoring_wait_s: float = 0.0, **late: float) -> dict[str, float]:
    """Marks 10 ms apart, with `scoring_wait_s` more before scoring's transaction began."""
    marks: dict[str, float] = {}
    at = posted
    for mark in MARKS:
        if mark == "scoring_began":
            at += scoring_wait_s
        at += late.get(mark, 0.0)
        marks[mark] = at
        at += 0.01
    return marks


def test_hops_follow_the_pipeline_and_add_up_to_the_latency() -> None:
    marks = probe(100.0, scoring_wait_s=0.5)
    split = hops(marks)
    assert list(split) == [f"{a} -> {b}" for a, b in zip(MARKS, MARKS[1:], strict=False)]
    assert round(split["lead_events_readable -> scoring_began"], 6) == 510.0
    total = (marks["handoffs_readable"] - marks["posted"]) * 1000
    assert abs(sum(split.values()) - total) < 1e-6


def test_a_missing_mark_is_measured_from_the_last_one_present() -> None:
    marks = probe(0.0)
    del marks["scoring_began"]
    split = hops(marks)
    assert "lead_events_readable -> lifecycle_sent" in split
    assert round(split["lead_events_readable -> lifecycle_sent"]) == 20


def test_the_tail_note_names_the_hop_the_slowest_probes_wait_in() -> None:
    marks = [probe(float(i)) for i in range(99)]
    marks.append(probe(200.0, handoffs_sent=2.0))  # one probe waits 2 s for handoff's relay
    notes = tail_notes(marks)
    assert notes[0].startswith("slowest 1% (1 probes")
    assert "dominated by handoff_began -> handoffs_sent" in notes[0]


def test_a_probe_without_its_handoff_counts_as_missing_not_as_a_latency() -> None:
    marks = [probe(float(i)) for i in range(10)]
    del marks[3]["handoffs_readable"]
    by_name = {f.name: f for f in figures(marks)}
    assert by_name["handoffs missing"].value == 1
    p50 = next(f for n, f in by_name.items() if n.startswith("speed to lead p50"))
    assert round(p50.value) == 90
