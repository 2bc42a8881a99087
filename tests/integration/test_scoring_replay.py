"""`leadrouter scoring replay` rebuilds exactly what live processing stored.

A generated history (merges across partitions, decay over weeks, capped activities, late and
clock-skewed events, marketing touches, sales outcomes, an erasure, duplicates and poison
records) goes through
the live consumer loop and handler in waves; the replay then rebuilds the projection from the
topics, and every column of every table scoring owns must come out the same.
"""

import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from harness.events import lead_activity, sales_outcome
from services.scoring.app import scoring_handler
from services.scoring.replay import replay
from services.scoring.service import RELAY
from shared.consumer import TransactionalConsumer
from shared.db import make_engine, make_sessionmaker
from shared.events import ERASURE_REQUESTED, CloudEvent
from shared.kafka import HANDOFFS, LEAD_EVENTS, client_options, ensure_topics, make_producer
from shared.playbook import load_playbook

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
KINDS = (
    "page_view",
    "pricing_page_view",
    "email_open",
    "email_click",
    "form_submit",
    "webinar_attended",
    "demo_request",
)

# Every column of scoring's tables but the wall-clock ones (created_at, updated_at,
# processed_at), which say when a row was written, not what it holds.
SNAPSHOT = {
    "leads": "select lead_key, email, attributes, score, fit_score, behaviour_score, tier,"
    " stage, events_count, explanation, behaviour, last_activity_at, evaluated_at, recycled_at"
    " from leads order by lead_key",
    "aliases": "select alias, lead_key from lead_aliases order by alias",
    "timers": "select kind, key, due_at, payload, attempts, last_error, parked_at"
    " from timers order by kind, key",
    "processed": "select consumer_group, event_id, topic, partition, kafka_offset"
    " from processed_events order by consumer_group, event_id",
    "offsets": "select consumer_group, topic, partition, next_offset"
    " from consumer_offsets order by consumer_group, topic, partition",
    "tombstones": "select lead_hash from erased_leads order by lead_hash",
    "touches": "select lead_key, first_touch, qualifying_touch, last_touch"
    " from lead_touches order by lead_key",
    "audit": "select distinct actor, action, target, detail::text from audit_log order by 3",
}


def outcome(
    lead_key: str, status: str, at: datetime, converted_to: str | None = None
) -> CloudEvent:
    return sales_outcome(
        lead_key, status, at, converted_to=converted_to, handoff_id=f"h-{lead_key}"
    )


def person_events(rng: random.Random, n: int, start: datetime) -> list[list[CloudEvent]]:
    """One person's activities under up to three names: anonymous, HubSpot, then identified
    (with both ids, which merges the three), grouped by name; about half carry a marketing
    touch whose `content` names the name it came under, some HubSpot ones an original source."""
    touches = random.Random(n)  # its own stream: the activities are those of the seed
    anon, hubspot, email = f"anon-{n}", str(1000 + n), f"p{n}@corp{n % 7}.example"
    domain_of = {0: "gmail.com", 1: "rival.example"}
    if n % 11 in domain_of:
        email = f"p{n}@{domain_of[n % 11]}"
    names = [
        (f"segment_anonymous:{anon}", None, {"segment_anonymous": anon}),
        (f"hubspot:{hubspot}", None, {"hubspot": hubspot}),
        (f"email:{email}", email, {"segment_anonymous": anon, "hubspot": hubspot}),
    ]
    events: list[list[CloudEvent]] = [[], [], []]
    at = start
    for i in range(rng.randint(3, 14)):
        at += timedelta(hours=rng.uniform(1, 72))
        name = min(i // 3, 2) if n % 3 else 0
        subject, mail, ids = names[name] if n % 3 else names[2]
        kind = rng.choice(KINDS if i else ("pricing_page_view",))
        late = at - timedelta(days=rng.uniform(1, 6)) if rng.random() < 0.15 else at
        attributes = {"company_size": rng.choice([10, 250, 5000]), "job_title": "Head of IT"}
        event = lead_activity(
            subject,
            kind,
            min(late, NOW - timedelta(minutes=1)),
            email=mail,
            external_ids=ids,
            attributes=attributes if rng.random() < 0.3 else None,
            properties={"path": rng.choice(["/pricing", "/blog"])},
        )
        if touches.random() < 0.5:
            event.data["touch"] = {
                "source": touches.choice(["google", "linkedin", "newsletter"]),
                "medium": touches.choice(["cpc", "email", None]),
                "campaign": f"campaign-{touches.randint(1, 4)}",
                "content": ("anonymous", "hubspot", "identified")[name if n % 3 else 2],
                "original": name == 1 and n % 5 == 0 and touches.random() < 0.5,
            }
        events[name].append(event)
    return events


async def publish(settings, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()


def on_topic(events: list[CloudEvent], topic: str = LEAD_EVENTS) -> list[tuple[str, bytes, bytes]]:
    return [(topic, e.subject.encode(), e.to_bytes()) for e in events]


def live_scoring(settings, sessions) -> TransactionalConsumer:
    """Scoring's live consumer loop and handler over both of its topics, as the service runs."""
    return TransactionalConsumer(
        name="scoring",
        group_id=settings.consumer_group("scoring"),
        topics=[settings.topic(LEAD_EVENTS), settings.topic(HANDOFFS)],
        bootstrap=client_options(settings),
        sessions=sessions,
        handler=scoring_handler(settings, load_playbook(settings.playbook)),
        relay=RELAY,
        batch_max=settings.consumer_batch_max,
        standalone=True,
    )


async def snapshot(sessions) -> dict[str, list[tuple[Any, ...]]]:
    async with sessions() as session:
        return {
            name: [tuple(r) for r in (await session.execute(text(sql))).all()]
            for name, sql in SNAPSHOT.items()
        }


async def test_the_replay_rebuilds_exactly_what_live_processing_stored(settings):
    rng = random.Random(14)
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    live = live_scoring(settings, sessions)
    start = NOW - timedelta(days=90)
    people = [person_events(rng, n, start + timedelta(days=rng.uniform(0, 60))) for n in range(40)]
    # A wave per name: live processes a wave's partitions side by side in whatever order
    # their batches come, so a person's names meet in different waves (as a visitor browses
    # first and identifies later), in the order their records were sent.
    anonymous, platform, identified = ([e for p in people for e in p[i]] for i in range(3))
    for wave in (anonymous, platform, identified):
        rng.shuffle(wave)  # people interleave, and a person's events arrive out of order
    capped = [
        lead_activity(
            "email:capped@corp.example",
            "pricing_page_view",
            start + timedelta(hours=h),
            email="capped@corp.example",
        )
        for h in range(40)
    ]
    skewed = lead_activity(
        "email:skew@corp.example",
        "demo_request",
        NOW + timedelta(hours=3),
        email="skew@corp.example",
    )
    erased = "email:p4@corp4.example"
    poison = [
        (LEAD_EVENTS, b"poison", b"{not json"),
        *on_topic(
            [
                lead_activity(
                    "email:x@corp.example", "page_view", NOW, event_type="leadrouter.lead.unknown"
                )
            ]
        ),
        (
            LEAD_EVENTS,
            b"email:bad@corp.example",
            lead_activity("email:bad@corp.example", "page_view", NOW)
            .to_bytes()
            .replace(b'"page_view"', b'"Bad Type!"'),
        ),
        (
            HANDOFFS,
            b"email:p5@corp5.example",
            outcome("email:p5@corp5.example", "recycled", NOW)
            .to_bytes()
            .replace(b'"lead_key"', b'"lead"'),
        ),
    ]
    duplicate = anonymous[3]
    waves: list[list[tuple[str, bytes, bytes]]] = [
        [*on_topic(anonymous), *on_topic(capped), *poison, *on_topic([duplicate])],
        on_topic(platform),
        [
            *on_topic(
                [
                    outcome(f"email:p{n}@corp{n % 7}.example", "assigned", NOW - timedelta(days=20))
                    for n in range(2, 20)
                ],
                HANDOFFS,
            ),
            *on_topic(
                [
                    outcome(f"email:p{n}@corp{n % 7}.example", "recycled", NOW - timedelta(days=20))
                    for n in range(2, 20, 3)
                ],
                HANDOFFS,
            ),
            *on_topic(
                [
                    outcome(
                        f"email:p{n}@corp{n % 7}.example",
                        "converted",
                        NOW - timedelta(days=19),
                        "sql",
                    )
                    for n in range(3, 20, 4)
                ],
                HANDOFFS,
            ),
            *on_topic([skewed]),
        ],
        [
            *on_topic(identified),
            *on_topic(
                [
                    lead_activity(
                        erased,
                        "erasure_requested",
                        NOW - timedelta(days=1),
                        email="p4@corp4.example",
                        external_ids={"segment_anonymous": "anon-4", "hubspot": "1004"},
                        event_type=ERASURE_REQUESTED,
                    )
                ]
            ),
            *on_topic([duplicate]),
        ],
        [
            # Outcomes for the erased person's names: a tombstoned key's is dropped.
            *on_topic(
                [
                    outcome(key, "recycled", NOW - timedelta(hours=12))
                    for key in (erased, "hubspot:1004", "segment_anonymous:anon-4")
                ],
                HANDOFFS,
            ),
            *on_topic(
                [
                    lead_activity(
                        "email:p6@corp6.example",
                        "demo_request",
                        NOW - timedelta(hours=2),
                        email="p6@corp6.example",
                    )
                ]
            ),
        ],
    ]
    await live.start()
    try:
        for wave in waves:
            await publish(settings, wave)
            await live.catch_up()
    finally:
        await live.stop()
    stored = await snapshot(sessions)
    # The replay refolds the touches from the topics: it neither keeps nor reads what the table
    # holds (a restored database may hold none, or stale ones).
    async with sessions() as session, session.begin():
        await session.execute(text("delete from lead_touches"))
        await session.execute(
            text("insert into lead_touches (lead_key, first_touch) values (:key, :touch)"),
            {"key": "email:stale@corp.example", "touch": '{"source": "stale"}'},
        )
    out = io.StringIO()
    total = await replay(settings, out=out)
    rebuilt = await snapshot(sessions)
    await engine.dispose()

    assert total == sum(len(w) for w in waves)
    # The history exercised what it is meant to: merges, timers, outcomes, an erasure.
    aliases_per_lead = len(stored["aliases"]) / len(stored["leads"])
    assert aliases_per_lead > 1.5
    assert stored["timers"]
    stages = {row[7] for row in stored["leads"]}
    assert {"recycled", "sql", "disqualified", "mql"} <= stages
    assert stored["tombstones"] and stored["audit"]
    # Touches folded through merges (an identified lead's first touch came under another
    # name), qualifying touches, original sources.
    touches = stored["touches"]
    assert len(touches) > 20
    assert any(
        key.startswith("email:") and first["content"] != "identified"
        for key, first, _, _ in touches
        if first
    )
    assert sum(1 for row in touches if row[2]) > 5
    assert any(first and first.get("original") for _, first, _, _ in touches)
    assert len(stored["processed"]) == total - len(poison) - 2  # poison and two duplicates
    for table in SNAPSHOT:
        assert rebuilt[table] == stored[table], table
    assert f"[replay] done: {total} records, {len(stored['leads'])} leads" in out.getvalue()


async def test_a_replay_that_fails_while_writing_leaves_the_old_projection(settings, monkeypatch):
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    live = live_scoring(settings, sessions)
    events = [
        lead_activity(
            f"email:f{n}@corp.example", "form_submit", NOW - timedelta(days=n), f"f{n}@corp.example"
        )
        for n in range(5)
    ]
    for event in events:
        event.data["touch"] = {"source": "google", "campaign": "autumn"}
    await publish(settings, on_topic(events))
    await live.start()
    try:
        await live.catch_up()
    finally:
        await live.stop()
    stored = await snapshot(sessions)

    async def crash(*args: object) -> None:
        raise RuntimeError("the disk filled up")

    # The leads, aliases and touches are written by then: they must roll back with the reset.
    monkeypatch.setattr("services.scoring.repository.copy_timers", crash)
    with pytest.raises(RuntimeError, match="disk filled up"):
        await replay(settings, out=io.StringIO())
    assert await snapshot(sessions) == stored
    assert len(stored["leads"]) == len(stored["touches"]) == 5
    await engine.dispose()
