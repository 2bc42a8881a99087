"""A deterministic, seeded stream of native lead events, and what the pure core makes of it.

Pure: no I/O and no clock. The same seed, size and base time give the same events, byte for
byte, so a failing run can be replayed.
"""

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.scoring.core import LeadState, apply_activity
from shared.events import LeadActivityData
from shared.playbook import Playbook

# (activity, weight, properties): mostly browsing, some intent, rare demo requests.
ACTIVITIES: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("page_view", 30, {"path": "/blog"}),
    ("page_view", 6, {"path": "/pricing"}),
    ("email_open", 22, {}),
    ("email_click", 12, {}),
    ("pricing_page_view", 10, {}),
    ("webinar_attended", 6, {}),
    ("form_submit", 3, {}),
    ("demo_request", 1, {}),
    ("unsubscribe", 2, {}),
)
DOMAINS = ("acme.example", "globex.example", "initech.example", "bigco.example", "gmail.com")
TITLES = ("Engineer", "Head of IT", "VP Sales", "Analyst", "Director of Marketing", "Student")


@dataclass(frozen=True)
class StreamShape:
    """How the stream looks: its size and how often a known person comes back."""

    seed: int
    events: int
    base_time: datetime
    returning_share: float = 0.7
    spacing_ms: int = 10


def lead_stream(shape: StreamShape) -> list[dict[str, Any]]:
    """The native events (`POST /v1/events` bodies' items) of the stream, in sending order."""
    rng = random.Random(shape.seed)
    names, weights = range(len(ACTIVITIES)), [a[1] for a in ACTIVITIES]
    people: list[int] = []
    events = []
    for i in range(shape.events):
        returning = bool(people) and rng.random() < shape.returning_share
        # Recent people come back more often than old ones, as in a real funnel.
        person = people[-1 - int(rng.expovariate(1 / 200)) % len(people)] if returning else None
        if person is None:
            person = len(people)
            people.append(person)
        kind, _, properties = ACTIVITIES[rng.choices(names, weights)[0]]
        email = f"p{person}-s{shape.seed}@{DOMAINS[person % len(DOMAINS)]}"
        identity: dict[str, Any] = {"email": email}
        if person % 3 == 0:  # a platform id that always comes with the same email: no merges
            identity["external_ids"] = {"hubspot": f"{shape.seed}-{person}"}
        attributes: dict[str, Any] = {}
        if not returning:
            attributes = {
                "company": DOMAINS[person % len(DOMAINS)].split(".")[0],
                "company_size": rng.choice((5, 40, 150, 250, 800, 2500)),
                "job_title": rng.choice(TITLES),
            }
        occurred_at = shape.base_time + timedelta(milliseconds=i * shape.spacing_ms)
        events.append(
            {
                "id": f"chaos-{shape.seed}-{i}",
                "identity": identity,
                "attributes": attributes,
                "activity": {
                    "type": kind,
                    "occurred_at": occurred_at.isoformat(),
                    "properties": dict(properties),
                },
            }
        )
    return events


def lead_key_of(event: dict[str, Any]) -> str:
    """The lead key ingest gives a native event with an email."""
    return f"email:{event['identity']['email'].strip().lower()}"


@dataclass(frozen=True)
class Expected:
    """What the pure scoring core makes of a stream: every lead, and who became an MQL."""

    leads: dict[str, LeadState]
    mqls: Counter[str]  # lead key -> how many became_mql transitions


def expected_outcome(events: list[dict[str, Any]], playbook: Playbook) -> Expected:
    """Run the pure scoring core over the events, in order, one lead at a time."""
    leads: dict[str, LeadState] = {}
    mqls: Counter[str] = Counter()
    for event in events:
        key = lead_key_of(event)
        data = LeadActivityData.model_validate(
            {k: event[k] for k in ("identity", "attributes", "activity")}
        )
        state = leads.get(key) or LeadState(lead_key=key)
        leads[key], transitions = apply_activity(state, data, event["id"], playbook)
        mqls.update(key for t in transitions if t.name == "became_mql")
    return Expected(leads, mqls)
