"""Cost of one activity for a lead with a short and a long history (pure core and row codec).

A lead with 10,000 earlier activities must cost at most 1.5x one with 10: the core, the JSON
the repository writes and reads back, per event.
"""

import time
from datetime import UTC, datetime, timedelta

from bench.result import Figure, Result
from services.scoring.codec import decode_behaviour, encode_behaviour
from services.scoring.core import LeadState, apply_activity
from shared import jsoncodec
from shared.events import Activity, Identity, LeadActivityData
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ["page_view", "email_open", "pricing_page_view", "email_click", "form_submit"]


def _event(kind: str, at: datetime) -> LeadActivityData:
    return LeadActivityData(
        identity=Identity(email="bot@bench.example"),
        activity=Activity(type=kind, occurred_at=at, properties={"path": "/pricing"}),
    )


def _lead(earlier: int, span: timedelta) -> LeadState:
    playbook = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
    state = LeadState(lead_key="email:bot@bench.example")
    step = span / max(earlier, 1)
    for i in range(earlier):
        state, _ = apply_activity(state, _event(KINDS[i % 5], T0 + step * i), f"h{i}", playbook)
    return state


def _cost_us(state: LeadState, events: int) -> tuple[float, int]:
    """Microseconds per event: decode the stored record, apply, encode; and the record's bytes."""
    playbook = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
    clock = state.last_activity_at or T0
    stored = jsoncodec.dumps(encode_behaviour(state.behaviour))
    started = time.perf_counter()
    for i in range(events):
        loaded = jsoncodec.loads(stored)
        lead = LeadState(
            lead_key=state.lead_key,
            behaviour=decode_behaviour(loaded),
            last_activity_at=state.last_activity_at,
            evaluated_at=state.evaluated_at,
            events_count=state.events_count,
        )
        at = clock + timedelta(minutes=i)
        lead, _ = apply_activity(lead, _event(KINDS[i % 5], at), f"n{i}", playbook)
        jsoncodec.dumps(encode_behaviour(lead.behaviour))
    return (time.perf_counter() - started) / events * 1e6, len(stored)


async def run(quick: bool) -> Result:
    events, rounds = (200, 3) if quick else (400, 7)
    result = Result("history")
    for label, span in (
        ("burst (30 days)", timedelta(days=30)),
        ("spread (3 years)", timedelta(days=3 * 365)),
    ):
        short_lead, long_lead = _lead(10, span), _lead(10_000, span)
        # Interleaved rounds, the fastest of each kept: the machine is shared and noisy.
        shorts, longs = [], []
        for _ in range(rounds):
            shorts.append(_cost_us(short_lead, events))
            longs.append(_cost_us(long_lead, events))
        short, short_bytes = min(shorts)
        long, long_bytes = min(longs)
        result.figures.append(
            Figure(
                f"µs per activity, 10,000 earlier activities, {label}",
                long,
                "µs",
                baseline=short,
                baseline_name="10 earlier activities",
                target=("max_ratio", 1.5),
            )
        )
        result.notes.append(
            f"{label}: stored behaviour record {short_bytes:,} bytes (10 earlier) vs "
            f"{long_bytes:,} bytes (10,000 earlier)"
        )
    return result
