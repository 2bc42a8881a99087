"""SQL for the leads projection and the identity aliases that point at leads."""

import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
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
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.codec import decode_behaviour, encode_behaviour
from services.scoring.core import LeadState, Score
from services.scoring.touches import LeadTouches
from shared import jsoncodec
from shared.db import consumer_offsets, driver_connection, metadata, outbox, processed_events
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
    """A lead from its row by column name (an asyncpg Record or a SQLAlchemy row's mapping)."""
    return LeadState(
        lead_key=row["lead_key"],
        email=row["email"],
        attributes=row["attributes"],
        behaviour=decode_behaviour(row["behaviour"]),
        stage=Stage(row["stage"]),
        tier=row["tier"],
        events_count=row["events_count"],
        last_activity_at=row["last_activity_at"],
        evaluated_at=row["evaluated_at"],
        score=Score(
            row["fit_score"],
            row["behaviour_score"],
            row["score"],
            tuple((c["rule"], c["points"]) for c in row["explanation"]),
        ),
        recycled_at=row["recycled_at"],
    )


# A lead's row, column by column: its name, its PostgreSQL type, and its value from a lead's
# state (JSON columns as JSON text). The live upsert (SAVE_LEADS: one array per column, one
# statement per batch) and the replay's COPY are both built from this list, so a new column
# of the projection is one line here (and one in `_state` to read it back).
LEAD_ROW: tuple[tuple[str, str, Callable[[LeadState], Any]], ...] = (
    ("lead_key", "text", lambda s: s.lead_key),
    ("email", "text", lambda s: s.email),
    ("attributes", "jsonb", lambda s: jsoncodec.dumps(s.attributes)),
    ("score", "int", lambda s: s.score.total),
    ("fit_score", "float8", lambda s: s.score.fit),
    ("behaviour_score", "float8", lambda s: s.score.behaviour),
    ("tier", "text", lambda s: s.tier),
    ("stage", "text", lambda s: s.stage),
    ("events_count", "int", lambda s: s.events_count),
    ("explanation", "jsonb", lambda s: jsoncodec.dumps(s.explanation())),
    ("behaviour", "jsonb", lambda s: jsoncodec.dumps(encode_behaviour(s.behaviour))),
    ("last_activity_at", "timestamptz", lambda s: s.last_activity_at),
    ("evaluated_at", "timestamptz", lambda s: s.evaluated_at),
    ("recycled_at", "timestamptz", lambda s: s.recycled_at),
)
LEAD_COLUMNS = tuple(name for name, _, _ in LEAD_ROW)
_LEAD_VALUES = tuple(value for _, _, value in LEAD_ROW)


def _row(s: LeadState) -> tuple[Any, ...]:
    return tuple(value(s) for value in _LEAD_VALUES)


def _upsert_leads_sql() -> str:
    """One insert of every row of a batch, fed one array per column ($1 ... $n), updating
    the rows that exist; returns each row's version. JSON goes as text arrays, cast per row
    (asyncpg encodes a text array in one pass; a jsonb array would be encoded value by value)."""
    names = ", ".join(LEAD_COLUMNS)
    arrays = ", ".join(
        f"${i}::{'text' if kind == 'jsonb' else kind}[]"
        for i, (_, kind, _) in enumerate(LEAD_ROW, start=1)
    )
    values = ", ".join(f"{name}::jsonb" if kind == "jsonb" else name for name, kind, _ in LEAD_ROW)
    updates = ", ".join(f"{name} = excluded.{name}" for name in LEAD_COLUMNS[1:])
    return (
        f"insert into leads ({names}) select {values} from unnest({arrays}) as t({names})"
        f" on conflict (lead_key) do update set {updates}, updated_at = now()"
        " returning lead_key, xmin::text::bigint as xid, updated_at"
    )


# The hot statements of a batch go straight to asyncpg on the session's own connection (in its
# transaction): fixed texts with one array per column, so each is prepared once whatever the
# batch size and its rows cost no per-row statement building, and neither SQLAlchemy's
# statement and row processing nor asyncpg's per-parameter encoding is paid per event.
SAVE_LEADS = _upsert_leads_sql()
RESOLVE_ALIASES = "select alias, lead_key from lead_aliases where alias = any($1::text[])"
CLAIM_ALIASES = (
    "select pg_advisory_xact_lock($1, h) from unnest($2::int[]) with ordinality as t(h, n)"
    " order by n"
)
LOCK_LEADS = "select * from leads where lead_key = any($1::text[]) order by lead_key for update"
BIND_ALIASES = (
    "insert into lead_aliases (alias, lead_key) select * from unnest($1::text[], $2::text[])"
    " on conflict (alias) do update set lead_key = excluded.lead_key"
)
# The lead and its touches (services/scoring/touches.py) in one statement.
DELETE_LEADS = (
    "with gone as (delete from lead_touches where lead_key = any($1::text[]))"
    " delete from leads where lead_key = any($1::text[])"
)

# A lead row's version: the id of the transaction that wrote it (xmin) and that transaction's
# time (updated_at; with it, an id that wrapped around after 2^32 transactions is still told
# apart). Any write of the row, by any path, makes a new one.
LeadVersion = tuple[int, datetime]

# LOCK_LEADS for a caller that holds some of these leads already (services/scoring/known_leads):
# every row is locked and its version returned, the JSON columns only when the caller's
# version is not the row's (most returning leads: their decoding was most of reading them).
LOCK_LEADS_UNLESS_KNOWN = (
    "select l.lead_key, l.email, l.score, l.fit_score, l.behaviour_score, l.tier, l.stage,"
    " l.events_count, l.last_activity_at, l.evaluated_at, l.recycled_at,"
    " l.xmin::text::bigint as xid, l.updated_at,"
    " case when v.known then null else l.attributes end as attributes,"
    " case when v.known then null else l.explanation end as explanation,"
    " case when v.known then null else l.behaviour end as behaviour"
    " from leads l left join unnest($2::text[], $3::bigint[], $4::timestamptz[])"
    " as k(key, xid, at) on k.key = l.lead_key"
    " cross join lateral (select coalesce(k.xid = l.xmin::text::bigint"
    " and k.at = l.updated_at, false) as known) as v"
    " where l.lead_key = any($1::text[]) order by l.lead_key for update of l"
)


async def resolve_aliases(session: AsyncSession, aliases: Iterable[str]) -> dict[str, str]:
    """The lead each known alias (email:..., hubspot:..., segment_anonymous:...) points at."""
    driver = await driver_connection(session)
    rows = await driver.fetch(RESOLVE_ALIASES, sorted(set(aliases)))
    return {alias: key for alias, key in rows}


async def claim_aliases(session: AsyncSession, aliases: Iterable[str]) -> dict[str, str]:
    """Lock these names until the transaction ends, then resolve them (the write path).

    Without the lock two instances that meet the same new person at the same instant (say
    `email:ana@...` on one partition, `hubspot:7` on another) both see no lead and make two.
    Locks are taken in one statement in hash order, so overlapping batches cannot deadlock.
    """
    names = sorted(set(aliases))
    hashes = sorted({_alias_lock_id(a) for a in names})
    if hashes:
        driver = await driver_connection(session)
        await driver.execute(CLAIM_ALIASES, IDENTITY_LOCK_SPACE, hashes)
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
    driver = await driver_connection(session)
    await driver.execute(BIND_ALIASES, [a for a, _ in ordered], [k for _, k in ordered])


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
    driver = await driver_connection(session)
    rows = await driver.fetch(LOCK_LEADS, keys)
    return {row["lead_key"]: _state(row) for row in rows}


async def lock_leads_unless_known(
    session: AsyncSession, keys: Iterable[str], known: Mapping[str, LeadVersion]
) -> dict[str, tuple[LeadVersion, LeadState | None]]:
    """Lock these leads (in key order) until the transaction ends; for each stored one, its
    version and its state, None where `known` names that same version (the caller has it)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    known_keys = sorted(k for k in keys if k in known)
    driver = await driver_connection(session)
    rows = await driver.fetch(
        LOCK_LEADS_UNLESS_KNOWN,
        keys,
        known_keys,
        [known[k][0] for k in known_keys],
        [known[k][1] for k in known_keys],
    )
    return {
        row["lead_key"]: (
            (row["xid"], row["updated_at"]),
            None if row["behaviour"] is None else _state(row),
        )
        for row in rows
    }


async def save_leads(session: AsyncSession, states: Iterable[LeadState]) -> dict[str, LeadVersion]:
    """Insert or update the leads in one statement; returns the version each row now has."""
    rows = [_row(s) for s in states]
    if not rows:
        return {}
    driver = await driver_connection(session)
    saved = await driver.fetch(SAVE_LEADS, *map(list, zip(*rows, strict=True)))
    return {lead_key: (xid, updated_at) for lead_key, xid, updated_at in saved}


async def delete_leads(session: AsyncSession, keys: Iterable[str]) -> None:
    """Remove leads merged into others (their aliases were repointed first)."""
    keys = sorted(set(keys))
    if keys:
        driver = await driver_connection(session)
        await driver.execute(DELETE_LEADS, keys)


async def get_lead(session: AsyncSession, key_or_alias: str) -> LeadState | None:
    """One lead by its key or any of its aliases, or None."""
    key = (await resolve_aliases(session, [key_or_alias])).get(key_or_alias, key_or_alias)
    row = (await session.execute(select(leads).where(leads.c.lead_key == key))).first()
    return _state(row._mapping) if row else None


async def find_by_email(session: AsyncSession, email: str) -> LeadState | None:
    """One lead by normalised email, or None."""
    return await get_lead(session, f"email:{email.strip().lower()}")


async def all_leads(session: AsyncSession) -> list[LeadState]:
    """Every lead (for replay checks and small exports)."""
    rows = await session.execute(select(leads).order_by(leads.c.lead_key))
    return [_state(r._mapping) for r in rows]


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
    """Empty scoring's state for a replay: leads, aliases, touches, processed ids, offsets,
    timers."""
    for statement in (
        delete(leads),
        delete(lead_aliases),
        delete(lead_touches),
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


async def truncate_projection(
    session: AsyncSession, group: str, timer_kind: str, relays: Iterable[str]
) -> None:
    """Empty scoring's state for a replay, the leads, aliases and touches by TRUNCATE (in one
    transaction with the new projection, so readers see the old one until it commits)."""
    await session.execute(text("truncate leads, lead_aliases, lead_touches"))
    await reset_projection(session, group, timer_kind, relays)


async def copy_leads(session: AsyncSession, states: Collection[LeadState]) -> int:
    """Write these leads (the table is empty) with one COPY; returns how many.

    The rows are encoded as the COPY streams them, so PostgreSQL parses one part while
    Python encodes the next.
    """
    records = (_row(s) for s in states)
    driver = await driver_connection(session)
    await driver.copy_records_to_table("leads", records=records, columns=LEAD_COLUMNS)
    return len(states)


async def copy_aliases(session: AsyncSession, bindings: dict[str, str]) -> None:
    """Write every alias (the table is empty) with one COPY."""
    driver = await driver_connection(session)
    await driver.copy_records_to_table(
        "lead_aliases", records=list(bindings.items()), columns=("alias", "lead_key")
    )


async def copy_processed_ids(
    session: AsyncSession, group: str, processed: dict[str, tuple[str, int, int]]
) -> None:
    """Record these event ids as processed by the group, with where each was read."""
    driver = await driver_connection(session)
    await driver.copy_records_to_table(
        "processed_events",
        records=[(group, i, t, p, o) for i, (t, p, o) in processed.items()],
        columns=("consumer_group", "event_id", "topic", "partition", "kafka_offset"),
    )


async def copy_offsets(
    session: AsyncSession, group: str, next_offsets: dict[tuple[str, int], int]
) -> None:
    """Store the group's next offset of each partition (its rows were deleted)."""
    driver = await driver_connection(session)
    await driver.copy_records_to_table(
        "consumer_offsets",
        records=[(group, t, p, o) for (t, p), o in sorted(next_offsets.items())],
        columns=("consumer_group", "topic", "partition", "next_offset"),
    )


async def copy_timers(session: AsyncSession, kind: str, due: dict[str, Any]) -> None:
    """Set one timer of `kind` per key (none of that kind is set) with one COPY."""
    driver = await driver_connection(session)
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


async def copy_touches(session: AsyncSession, touches: Mapping[str, LeadTouches]) -> None:
    """Write these leads' touches (the table is empty) with one COPY."""

    def doc(touch: dict[str, Any] | None) -> str | None:
        return None if touch is None else jsoncodec.dumps(touch)

    driver = await driver_connection(session)
    await driver.copy_records_to_table(
        "lead_touches",
        records=[
            (k, doc(t.first), doc(t.qualifying), doc(t.last))
            for k, t in sorted(touches.items())
            if not t.empty
        ],
        columns=("lead_key", "first_touch", "qualifying_touch", "last_touch"),
    )
