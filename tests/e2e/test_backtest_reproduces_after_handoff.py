"""The backtest of the current playbook decides after the handoff what the live system decided.

A playbook with clocks of seconds runs live through the real scoring and handoff services on
Kafka and PostgreSQL: a lead turns hot after its handoff (its clock tightens, it breaches,
escalates, and the manager queue recycles it `unworked`), a lead nobody accepts waits in the
manager queue, an accepted lead nobody works is reminded and recycled `stale`, and sales'
reject reasons revisit (`bad_timing`, routed again at its date), suppress (`not_a_fit`, held
back when it qualifies again with the same fit) and merge (`duplicate`). Then `read_history`
+ `simulate` with the same playbook must end every handoff as live did (status, tier, reason,
policy) and count the same clock events as the handoffs topic holds.
"""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import TypeAdapter
from sqlalchemy import select

from services.backtest.compare import after_handoff
from services.backtest.history import read_history
from services.backtest.simulate import simulate
from services.handoff.repository import handoffs
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.scoring.repository import leads
from shared.db import make_engine
from shared.events import CloudEvent
from shared.kafka import LEAD_EVENTS
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT
from tests.helpers import eventually, publish

pytestmark = pytest.mark.integration

# One rep, so who gets a lead does not depend on the order two partitions are read in; the
# clocks in seconds: warm accept 15 s, hot 6 s; the manager queue 6 s (hot only); stale warm
# leads reminded after about 4 s and recycled after about 9 s; bad_timing revisits after 9 s.
ROUTING = """
routing:
  rules:
    - { name: everyone_else, team: sales }
  teams:
    - name: sales
      manager_queue: sales-manager
      reps: [{ id: rep-ana, name: Ana Lima, email: ana@example.com, capacity: 1000 }]

sla:
  tiers:
    hot: { accept_minutes: 0.1, contact_minutes: 60 }
    warm: { accept_minutes: 0.25, contact_minutes: 60 }
    cold: { accept_minutes: 60, contact_minutes: 120 }
  max_reassignments: 0
  reject_reasons: [not_a_fit, no_budget, wrong_contact, duplicate, bad_timing]
  reject_policies:
    bad_timing: { policy: revisit, days: 0.0001 }
    not_a_fit: { policy: suppress, days: 1 }
    duplicate: { policy: merge }
  stale:
    tiers:
      warm: { remind_days: 0.00005, recycle_days: 0.0001 }
  manager_queue:
    tiers: { hot: 0.1 }
"""

# What each lead does, and how its handoffs end live (status, tier, reason, policy).
EXPECTED = {
    "raised": [("recycled", "hot", "unworked", "recycle")],
    "idle": [("escalated", "warm", None, None)],
    "quiet": [("recycled", "warm", "stale", "recycle")],
    "later": [("rejected", "warm", "bad_timing", "revisit"), ("escalated", "warm", None, None)],
    "nofit": [("rejected", "warm", "not_a_fit", "suppress")],
    "dup": [("rejected", "warm", "duplicate", "merge")],
}


def playbook_file(tmp_path: Path) -> Path:
    example = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
    path = tmp_path / "playbook.yaml"
    path.write_text(example[: example.index("routing:")] + ROUTING)
    return path


def key(who: str) -> str:
    return f"email:{who}@midsize.example"


def activities(who: str, *kinds: str) -> list[CloudEvent]:
    """The lead's activities, happening now (live clocks run on processing time, the
    simulation's on event time: the same only for history that arrives as it happens)."""
    native = TypeAdapter(NativeLeadEvent)
    now = datetime.now(UTC).isoformat()
    return [
        native_to_cloud_event(
            native.validate_python(
                {
                    "id": f"{who}-{kind}-{n}-{now}",
                    "identity": {"email": f"{who}@midsize.example"},
                    "attributes": {"company_size": 300},  # fit 20
                    "activity": {"type": kind, "occurred_at": now},
                }
            ),
            "api",
        )
        for n, kind in enumerate(kinds)
    ]


async def test_the_backtest_reproduces_the_live_clocks_and_after_handoff_policies(
    settings, services, tmp_path
):
    path = playbook_file(tmp_path)
    for service in services.values():
        service.env["LEADROUTER_PLAYBOOK"] = str(path)
    settings = settings.model_copy(update={"playbook": path})
    playbook = load_playbook(path)
    scoring = await services["scoring"].start()
    handoff = await services["handoff"].start()
    # Two form submits and a fit of 20: 60, warm, handed off with a 15-second accept clock.
    await publish(
        settings,
        LEAD_EVENTS,
        [e for who in EXPECTED for e in activities(who, "form_submit", "form_submit")],
    )
    async with httpx.AsyncClient(base_url=handoff.url) as client:

        async def rows() -> list[dict]:
            listed = (await client.get("/v1/handoffs", params={"limit": 1000})).json()
            return sorted(listed, key=lambda h: h["created_at"])

        async def first_handoffs() -> dict[str, dict] | None:
            by_lead = {h["lead_key"]: h for h in reversed(await rows())}
            return by_lead if all(key(who) in by_lead for who in EXPECTED) else None

        first = await eventually(first_handoffs, 60, "a handoff for every lead")
        # A demo request: hot (100) after the handoff; the clock tightens to 6 seconds.
        await publish(settings, LEAD_EVENTS, activities("raised", "demo_request"))
        accepted = await client.post(
            f"/v1/handoffs/{first[key('quiet')]['handoff_id']}/accept",
            json={"rep_id": "rep-ana"},
        )
        assert accepted.status_code == 200, accepted.text
        for who, reason in (("later", "bad_timing"), ("nofit", "not_a_fit"), ("dup", "duplicate")):
            rejected = await client.post(
                f"/v1/handoffs/{first[key(who)]['handoff_id']}/reject",
                json={"reason": reason, "rep_id": "rep-ana"},
            )
            assert rejected.status_code == 200, rejected.text

        async def scored(who: str) -> dict:
            return (await client.get(f"{scoring.url}/v1/leads/{key(who)}")).json()

        async def stage(who: str) -> str:
            return str((await scored(who)).get("stage"))

        async def recycled() -> bool:
            return await stage("nofit") == "recycled"

        await eventually(recycled, 30, "scoring to recycle the not_a_fit lead")
        # Back below the threshold, then qualifying again with the same fit: held back.
        await publish(settings, LEAD_EVENTS, activities("nofit", "unsubscribe"))

        async def unsubscribed() -> bool:
            return (await scored("nofit")).get("score") == 10

        await eventually(unsubscribed, 30, "the unsubscribe scored")
        await publish(settings, LEAD_EVENTS, activities("nofit", "demo_request"))

        async def settled() -> dict[str, list[tuple]] | None:
            ended: dict[str, list[tuple]] = {who: [] for who in EXPECTED}
            for h in await rows():
                who = h["lead_key"].removeprefix("email:").split("@")[0]
                ended[who].append((h["status"], h["tier"], h["reason"], h["recycle_policy"]))
            if ended != EXPECTED or await stage("nofit") != "mql":
                return None
            return ended

        await eventually(settled, 90, "every clock and policy to run out live")
        funnel = (await client.get("/v1/funnel")).json()
    services["scoring"].stop()
    handoff.stop()

    engine = make_engine(settings.database_url, pool_size=1)
    async with engine.connect() as conn:
        live_rows = (
            (await conn.execute(select(handoffs).order_by(handoffs.c.created_at))).mappings().all()
        )
        live_stages = dict((await conn.execute(select(leads.c.lead_key, leads.c.stage))).all())
    await engine.dispose()
    recorded = await read_history(settings)
    # What the live handoff service published, as a sales tool reads the handoffs topic.
    live_kinds = Counter(e.handoff_kind for e in recorded if e.handoff is not None)
    outcome = simulate(recorded, playbook)
    simulated: dict[str, list[tuple]] = {}
    for h in outcome.handoffs:
        simulated.setdefault(h.lead_key, []).append(
            (h.status, h.raised_to or h.tier, h.reason, h.recycle_policy)
        )
    live: dict[str, list[tuple]] = {}
    for row in live_rows:
        live.setdefault(row["lead_key"], []).append(
            (row["status"], row["tier"], row["reason"], row["recycle_policy"])
        )
    assert simulated == live
    assert outcome.stages == live_stages
    counts = after_handoff(outcome)
    assert counts["tier_raises"] == live_kinds["tier_raised"] == 1
    assert counts["manager_queue_warnings"] == live_kinds["manager_queue_warning"] == 1
    assert counts["manager_queue_breaches"] == live_kinds["manager_queue_breached"] == 1
    assert counts["stale_reminders"] == live_kinds["stale_reminder"] == 1
    assert counts["accept_breaches"] == live_kinds["sla_breached"] == 3
    assert counts["escalated"] == live_kinds["reassigned"] == 3  # raised, idle, later's revisit
    assert counts["revisited"] == 1 and counts["suppressed"] == 1
    assert counts["recycled_by_reason"] == {
        "bad_timing": 1,
        "duplicate": 1,
        "not_a_fit": 1,
        "stale": 1,
        "unworked": 1,
    }
    assert counts["recycled_by_policy"] == {"merge": 1, "recycle": 2, "revisit": 1, "suppress": 1}
    # The live funnel counts the same, by reason and by policy.
    assert counts["recycled_by_reason"] == funnel["recycled_by_reason"]
    assert counts["recycled_by_policy"] == funnel["recycled_by_policy"]
