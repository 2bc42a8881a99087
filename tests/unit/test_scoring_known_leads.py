"""The scoring handler's kept lead states: only the version saved is handed back, and the least
recently saved go first once the bound is reached."""

from datetime import UTC, datetime

from services.scoring.core import LeadState
from services.scoring.known_leads import KnownLeads

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def lead(key: str, events: int = 1) -> LeadState:
    return LeadState(lead_key=key, events_count=events)


def test_a_copy_is_handed_back_only_for_the_version_it_was_saved_as():
    known = KnownLeads(10)
    ana = lead("email:ana@x.example")
    known.saved({ana.lead_key: (101, AT)}, {ana.lead_key: ana})
    assert known.state(ana.lead_key, (101, AT)) is ana
    assert known.state(ana.lead_key, (102, AT)) is None  # another writer's row
    assert known.state(ana.lead_key, (101, datetime(2026, 1, 1, tzinfo=UTC))) is None
    assert known.versions([ana.lead_key, "email:bob@x.example"]) == {ana.lead_key: (101, AT)}
    known.forget([ana.lead_key])
    assert known.state(ana.lead_key, (101, AT)) is None and len(known) == 0


def test_the_least_recently_saved_go_first():
    known = KnownLeads(2)
    a, b, c = lead("a"), lead("b"), lead("c")
    known.saved({"a": (1, AT), "b": (2, AT)}, {"a": a, "b": b})
    known.saved({"a": (3, AT)}, {"a": lead("a", 2)})  # a used again: b is now the oldest
    known.saved({"c": (4, AT)}, {"c": c})
    assert known.versions(["a", "b", "c"]) == {"a": (3, AT), "c": (4, AT)}
    assert known.state("a", (3, AT)).events_count == 2
    nothing = KnownLeads(0)  # what the bench's A/B and the tests' reference runs use
    nothing.saved({"a": (1, AT)}, {"a": a})
    assert len(nothing) == 0
