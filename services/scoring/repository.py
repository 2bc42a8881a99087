"""SQL for the leads projection and the identity aliases that point at leads."""

import zlib
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.codec import decode_behaviour, encode_behaviour
from services.scoring.core import LeadState, Score
from services.scoring.touches import LeadTouches
from shared import jsoncodec
from shared.db import consumer_offsets, metadata, outbox, processed_events
from shared.timers import timers
from shared.vocabulary import Stage

leads = Table(
    "leads",
    metadata,
    Column("lead_key", Text, primary_key=True),
    Column("email", Text),
    Column("attributes", JSONB, nullable=False),
    Column("score", Integer, nullable=False),
    Column("fit_score", Float, nullable=False),
    Column("behaviour_score", Float, nullable=False),
    Column("tier", Text),
    Column("stage", Text, nullable=False),
    Column("events_count", Integer, nullable=False),
    Column("explanation", JSONB, nullable=False),
    # The compact per-rule tallies (services/scoring/core Behaviour, services/scoring/codec.py).
    Column("behaviour", JSONB, nullable=False),
    Column("last_activity_at", DateTime(timezone=True)),
    Column("evaluated_at", DateTime(timezone=True)),
    Column("recycled_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("leads_email", leads.c.email)

# Raw awards of leads stored before the tallies (migration 0007), waiting for
# `leadrouter scoring fold-legacy-hits` (services/scoring/legacy_hits.py); empty on a new
# installation and once the command ran.
legacy_hits = Table(
    "scoring_legacy_hits",
    metadata,
    Column("lead_key", Text, primary_key=True),
    Column("hits", JSONB, nullable=False),
    Column("last_activity_at", DateTime(timezone=True)),
)

# Advisory locks on identities use the two-int form, whose key space no bigint lock (outbox
# relays, migrations) shares; the second int is a stable 32-bit hash of the alias.
IDENTITY_LOCK_SPACE = 0x1EAD

lead_aliases = Table(
    "lead_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
)
Index("lead_aliases_lead_key", lead_aliases.c.lead_key)


def _state(row: Any) -> LeadState:
    return LeadState(
        lead_key=row.lead_key,
        email=row.email,
        attributes=row.attributes,
        behaviour=decode_behaviour(row.behaviour),
        stage=Stage(row.stage),
        tier=row.tier,
        events_count=row.events_count,
        last_activity_at=row.last_activity_at,
        evaluated_at=row.evaluated_at,
        score=Score(
            row.fit_score,
            row.behaviour_score,
            row.score,
            tuple((c["rule"], c["points"]) for c in row.explanation),
        ),
        recycled_at=row.recycled_at,
    )


# A lead's row in column order, JSON columns already encoded: the live upsert (SAVE_LEADS, one
# array per column) and the replay's COPY write the same tuples.
LEAD_COLUMNS = (
    "lead_key",
    "email",
    "attributes",
    "score",
    "fit_score",
    "behaviour_score",
    "tier",
    "stage",
    "events_count",
    "explanation",
    "behaviour",
    "last_activity_at",
    "evaluated_at",
    "recycled_at",
)


def _row(s: LeadState) -> tuple[Any, ...]:
    dumps = jsoncodec.dumps
    return (
        s.lead_key,
        s.email,
        dumps(s.attributes),
        s.score.total,
        s.score.fit,
        s.score.behaviour,
        s.tier,
        s.stage,
        s.events_count,
        dumps(s.explanation()),
        dumps(encode_behaviour(s.behaviour)),
        s.last_activity_at,
        s.evaluated_at,
        s.recycled_at,
    )


# The hot statements of a batch are fixed SQL texts with one array per column (unnest), so
# each compiles and is prepared once whatever the batch size, and its rows cost no per-row
# statement building (SQLAlchemy's executemany and IN-lists took ~1 ms per statement).
RESOLVE_ALIASES = text(
    "select alias, lead_key from lead_aliases where alias = any(cast(:aliases as text[]))"
)
LOCK_LEADS = text(
    "select * from leads where lead_key = any(cast(:keys as text[])) order by lead_key for update"
)
BIND_ALIASES = text(
    "insert into lead_aliases (alias, lead_key)"
    " select * from unnest(cast(:aliases as text[]), cast(:keys as text[]))"
    " on conflict (alias) do update set lead_key = excluded.lead_key"
)
SAVE_LEADS = text(
    "insert into leads (lead_key, email, attributes, score, fit_score, behaviour_score, tier,"
    " stage, events_count, explanation, behaviour, last_activity_at, evaluated_at, recycled_at)"
    " select k, e, a::jsonb, s, f, b, t, st, n, x::jsonb, bh::jsonb, la, ev, rc from unnest("
    "cast(:lead_key as text[]), cast(:email as text[]), cast(:attributes as text[]),"
    " cast(:score as int[]), cast(:fit_score as float8[]), cast(:behaviour_score as float8[]),"
    " cast(:tier as text[]), cast(:stage as text[]), cast(:events_count as int[]),"
    " cast(:explanation as text[]), cast(:behaviour as text[]),"
    " cast(:last_activity_at as timestamptz[]), cast(:evaluated_at as timestamptz[]),"
    " cast(:recycled_at as timestamptz[]))"
    " as t(k, e, a, s, f, b, t, st, n, x, bh, la, ev, rc)"
    " on conflict (lead_key) do update set email = excluded.email,"
    " attributes = excluded.attributes, score = excluded.score,"
    " fit_score = excluded.fit_score, behaviour_score = excluded.behaviour_score,"
    " tier = excluded.tier, stage = excluded.stage, events_count = excluded.events_count,"
    " explanation = excluded.explanation, behaviour = excluded.behaviour,"
    " last_activity_at = excluded.last_activity_at, evaluated_at = excluded.evaluated_at,"
    " recycled_at = excluded.recycled_at, updated_at = now()"
    " returning lead_key, xmin::text::bigint as xid, updated_at"
)

# A lead row's version: the id of the transaction that wrote it (xmin) and that transaction's
# time (updated_at; with it, an id that wrapped around after 2^32 transactions is still told
# apart). Any write of the row, by any path, makes a new one.
LeadVersion = tuple[int, datetime]

# LOCK_LEADS for a caller that holds some of these leads already (services/scoring/known_leads):
# every row is locked and its version returned, the JSON columns only when the caller's
# version is not the row's (most returning leads: their decoding was most of reading them).
LOCK_LEADS_UNLESS_KNOWN = text(
    "select l.lead_key, l.email, l.score, l.fit_score, l.behaviour_score, l.tier, l.stage,"
    " l.events_count, l.last_activity_at, l.evaluated_at, l.recycled_at,"
    " l.xmin::text::bigint as xid, l.updated_at,"
    " case when v.known then null else l.attributes end as attributes,"
    " case when v.known then null else l.explanation end as explanation,"
    " case when v.known then null else l.behaviour end as behaviour"
    " from leads l left join unnest(cast(:known_keys as text[]), cast(:known_xids as bigint[]),"
    " cast(:known_at as timestamptz[])) as k(key, xid, at) on k.key = l.lead_key"
    " cross join lateral (select coalesce(k.xid = l.xmin::text::bigint"
    " and k.at = l.updated_at, false) as known) as v"
    " where l.lead_key = any(cast(:keys as text[])) order by l.lead_key for update of l"
)


async def resolve_aliases(session: AsyncSession, aliases: Iterable[str]) -> dict[str, str]:
    """The lead each known alias (email:..., hubspot:..., segment_anonymous:...) points at."""
    rows = await session.execute(RESOLVE_ALIASES, {"aliases": sorted(set(aliases))})
    return {r.alias: r.lead_key for r in rows}


async def claim_aliases(session: AsyncSession, aliases: Iterable[str]) -> dict[str, str]:
    """Lock these names until the transaction ends, then resolve them (the write path).

    Without the lock two instances that meet the same new person at the same instant (say
    `email:ana@...` on one partition, `hubspot:7` on another) both see no lead and make two.
    Locks are taken in one statement in hash order, so overlapping batches cannot deadlock.
    """
    names = sorted(set(aliases))
    hashes = sorted({_alias_lock_id(a) for a in names})
    if hashes:
        await session.execute(
            text(
                "select pg_advisory_xact_lock(:space, h) from unnest(:hashes) with ordinality"
                " as t(h, n) order by n"
            ).bindparams(bindparam("hashes", type_=ARRAY(Integer))),
            {"space": IDENTITY_LOCK_SPACE, "hashes": hashes},
        )
    return await resolve_aliases(session, names)


def _alias_lock_id(alias: str) -> int:
    """A stable signed 32-bit id for an alias (collisions only serialise a little more)."""
    crc = zlib.crc32(alias.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


async def bind_aliases(session: AsyncSession, bindings: dict[str, str]) -> None:
    """Point aliases at leads (a merge repoints the absorbed lead's aliases)."""
    if not bindings:
        return
    ordered = sorted(bindings.items())
    await session.execute(
        BIND_ALIASES, {"aliases": [a for a, _ in ordered], "keys": [k for _, k in ordered]}
    )


async def aliases_of(session: AsyncSession, lead_keys: Iterable[str]) -> dict[str, str]:
    """Every alias of these leads."""
    rows = await session.execute(
        select(lead_aliases).where(lead_aliases.c.lead_key.in_(sorted(set(lead_keys))))
    )
    return {r.alias: r.lead_key for r in rows}


async def lock_leads(session: AsyncSession, keys: Iterable[str]) -> dict[str, LeadState]:
    """The stored state of these leads, locked (in key order) until the transaction ends."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await session.execute(LOCK_LEADS, {"keys": keys})
    return {row.lead_key: _state(row) for row in rows}


async def lock_leads_unless_known(
    session: AsyncSession, keys: Iterable[str], known: Mapping[str, LeadVersion]
) -> dict[str, tuple[LeadVersion, LeadState | None]]:
    """Lock these leads (in key order) until the transaction ends; for each stored one, its
    version and its state, None where `known` names that same version (the caller has it)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    known_keys = sorted(k for k in keys if k in known)
    rows = await session.execute(
        LOCK_LEADS_UNLESS_KNOWN,
        {
            "keys": keys,
            "known_keys": known_keys,
            "known_xids": [known[k][0] for k in known_keys],
            "known_at": [known[k][1] for k in known_keys],
        },
    )
    return {
        row.lead_key: (
            (row.xid, row.updated_at),
            None if row.behaviour is None else _state(row),
        )
        for row in rows
    }


async def save_leads(session: AsyncSession, states: Iterable[LeadState]) -> dict[str, LeadVersion]:
    """Insert or update the leads in one statement; returns the version each row now has."""
    rows = [_row(s) for s in states]
    if not rows:
        return {}
    columns = zip(LEAD_COLUMNS, zip(*rows, strict=True), strict=True)
    saved = await session.execute(SAVE_LEADS, {name: list(values) for name, values in columns})
    return {row.lead_key: (row.xid, row.updated_at) for row in saved}


async def delete_leads(session: AsyncSession, keys: Iterable[str]) -> None:
    """Remove leads merged into others (their aliases were repointed first)."""
    keys = sorted(set(keys))
    if keys:
        await session.execute(delete(leads).where(leads.c.lead_key.in_(keys)))
        await session.execute(delete(lead_touches).where(lead_touches.c.lead_key.in_(keys)))


async def get_lead(session: AsyncSession, key_or_alias: str) -> LeadState | None:
    """One lead by its key or any of its aliases, or None."""
    key = (await resolve_aliases(session, [key_or_alias])).get(key_or_alias, key_or_alias)
    row = (await session.execute(select(leads).where(leads.c.lead_key == key))).first()
    return _state(row) if row else None


async def find_by_email(session: AsyncSession, email: str) -> LeadState | None:
    """One lead by normalised email, or None."""
    return await get_lead(session, f"email:{email.strip().lower()}")


async def all_leads(session: AsyncSession) -> list[LeadState]:
    """Every lead (for replay checks and small exports)."""
    rows = await session.execute(select(leads).order_by(leads.c.lead_key))
    return [_state(r) for r in rows]


async def count_leads(session: AsyncSession) -> int:
    """How many leads the projection holds."""
    return int(await session.scalar(select(func.count()).select_from(leads)) or 0)


async def legacy_hits_batch(session: AsyncSession, limit: int) -> list[Any]:
    """Up to `limit` leads' waiting raw awards (lead_key, hits, last_activity_at), locked."""
    rows = await session.execute(
        select(legacy_hits).order_by(legacy_hits.c.lead_key).limit(limit).with_for_update()
    )
    return list(rows)


async def delete_legacy_hits(session: AsyncSession, keys: Iterable[str]) -> None:
    """Drop the waiting raw awards stored under these keys."""
    await session.execute(delete(legacy_hits).where(legacy_hits.c.lead_key.in_(sorted(set(keys)))))


async def reset_projection(
    session: AsyncSession, group: str, timer_kind: str, relays: Iterable[str]
) -> None:
    """Empty scoring's state for a replay: leads, aliases, processed ids, offsets, timers."""
    for statement in (
        delete(leads),
        delete(lead_aliases),
        delete(legacy_hits),  # the replay counts every award from the topics again
        delete(processed_events).where(processed_events.c.consumer_group == group),
        delete(consumer_offsets).where(consumer_offsets.c.consumer_group == group),
        delete(timers).where(timers.c.kind == timer_kind),
        delete(outbox).where(outbox.c.relay.in_(sorted(relays))),
    ):
        await session.execute(statement)


async def drop_outbox(session: AsyncSession, relay: str) -> None:
    """Drop a relay's unpublished rows (a replay's re-derived lifecycle events)."""
    await session.execute(delete(outbox).where(outbox.c.relay == relay))


# The replay writes the whole projection at once: COPY (binary, through the session's own
# asyncpg connection, so inside its transaction) instead of batched upserts.


async def _driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction (for COPY)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def truncate_projection(
    session: AsyncSession, group: str, timer_kind: str, relays: Iterable[str]
) -> None:
    """Empty scoring's state for a replay, the leads and aliases by TRUNCATE (in one transaction
    with the new projection, so readers see the old one until it commits)."""
    await session.execute(text("truncate leads, lead_aliases"))
    await reset_projection(session, group, timer_kind, relays)


async def copy_leads(session: AsyncSession, states: Collection[LeadState]) -> int:
    """Write these leads (the table is empty) with one COPY; returns how many.

    The rows are encoded as the COPY streams them, so PostgreSQL parses one part while
    Python encodes the next.
    """
    records = (_row(s) for s in states)
    driver = await _driver_connection(session)
    await driver.copy_records_to_table("leads", records=records, columns=LEAD_COLUMNS)
    return len(states)


async def copy_aliases(session: AsyncSession, bindings: dict[str, str]) -> None:
    """Write every alias (the table is empty) with one COPY."""
    driver = await _driver_connection(session)
    await driver.copy_records_to_table(
        "lead_aliases", records=list(bindings.items()), columns=("alias", "lead_key")
    )


async def copy_processed_ids(
    session: AsyncSession, group: str, processed: dict[str, tuple[str, int, int]]
) -> None:
    """Record these event ids as processed by the group, with where each was read."""
    driver = await _driver_connection(session)
    await driver.copy_records_to_table(
        "processed_events",
        records=[(group, i, t, p, o) for i, (t, p, o) in processed.items()],
        columns=("consumer_group", "event_id", "topic", "partition", "kafka_offset"),
    )


async def copy_offsets(
    session: AsyncSession, group: str, next_offsets: dict[tuple[str, int], int]
) -> None:
    """Store the group's next offset of each partition (its rows were deleted)."""
    driver = await _driver_connection(session)
    await driver.copy_records_to_table(
        "consumer_offsets",
        records=[(group, t, p, o) for (t, p), o in sorted(next_offsets.items())],
        columns=("consumer_group", "topic", "partition", "next_offset"),
    )


async def copy_timers(session: AsyncSession, kind: str, due: dict[str, Any]) -> None:
    """Set one timer of `kind` per key (none of that kind is set) with one COPY."""
    driver = await _driver_connection(session)
    await driver.copy_records_to_table(
        "timers",
        records=[(kind, k, at, "{}") for k, at in sorted(due.items())],
        columns=("kind", "key", "due_at", "payload"),
    )


async def erased_hashes(session: AsyncSession) -> set[str]:
    """Every tombstone of an erased lead."""
    return set((await session.execute(text("select lead_hash from erased_leads"))).scalars())


async def add_tombstones(session: AsyncSession, hashes: Iterable[str]) -> None:
    """Store tombstones of erased leads (those stored already stay as they are)."""
    hashes = sorted(set(hashes))
    if hashes:
        await session.execute(
            text(
                "insert into erased_leads (lead_hash) select unnest(cast(:hashes as text[]))"
                " on conflict do nothing"
            ),
            {"hashes": hashes},
        )


# -- touches: where each lead came from (services/scoring/touches.py) ------------------------

# Beside the leads, not in them: most events carry no touch and change no stage, and they
# never read or write this table.
lead_touches = Table(
    "lead_touches",
    metadata,
    Column("lead_key", Text, primary_key=True),
    Column("first_touch", JSONB),
    Column("qualifying_touch", JSONB),
    Column("last_touch", JSONB),
)


# Fixed statements with one array per column, as for the leads (a multi-row insert built per
# batch cost more than the rest of the touches' work).
GET_TOUCHES = text(
    "select lead_key, first_touch, qualifying_touch, last_touch from lead_touches"
    " where lead_key = any(cast(:keys as text[]))"
)
SAVE_TOUCHES = text(
    "insert into lead_touches (lead_key, first_touch, qualifying_touch, last_touch)"
    " select k, cast(f as jsonb), cast(q as jsonb), cast(l as jsonb) from unnest("
    "cast(:keys as text[]), cast(:firsts as text[]), cast(:qualifyings as text[]),"
    " cast(:lasts as text[])) as t(k, f, q, l)"
    " on conflict (lead_key) do update set first_touch = excluded.first_touch,"
    " qualifying_touch = excluded.qualifying_touch, last_touch = excluded.last_touch"
)


async def get_touches(session: AsyncSession, keys: Iterable[str]) -> dict[str, LeadTouches]:
    """The touches of these leads (leads without any are absent)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await session.execute(GET_TOUCHES, {"keys": keys})
    return {r.lead_key: LeadTouches(r.first_touch, r.qualifying_touch, r.last_touch) for r in rows}


async def save_touches(session: AsyncSession, touches: Mapping[str, LeadTouches]) -> None:
    """Insert or replace these leads' touches."""
    kept = sorted((k, t) for k, t in touches.items() if not t.empty)
    if not kept:
        return

    def column(role: str) -> list[str | None]:
        values = [getattr(t, role) for _, t in kept]
        return [jsoncodec.dumps(v) if v is not None else None for v in values]

    await session.execute(
        SAVE_TOUCHES,
        {
            "keys": [k for k, _ in kept],
            "firsts": column("first"),
            "qualifyings": column("qualifying"),
            "lasts": column("last"),
        },
    )
