"""Erasure on the scoring side: a lead's projection, aliases, awards and timers go.

What stays is a tombstone: the sha256 of the erased key, so sales outcomes still in flight
for that key (they carry no identity) do not start the lead again. Events that carry an
email or platform id again start a new lead from nothing.
"""

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Column, DateTime, Table, Text, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import repository
from shared import outbox, timers
from shared.db import metadata
from shared.db import outbox as outbox_rows
from shared.events import LIFECYCLE_ERASED, CloudEvent, LifecycleData, derived_event_id

erased_leads = Table(
    "erased_leads",
    metadata,
    Column("lead_hash", Text, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def lead_hash(lead_key: str) -> str:
    """The tombstone of a lead key."""
    return hashlib.sha256(lead_key.encode()).hexdigest()


def erased_event(lead_key: str, cause: str, now: datetime) -> CloudEvent:
    """The lifecycle event that tells subscribers to erase a lead: its key, no personal data."""
    return CloudEvent(
        id=derived_event_id("lifecycle", "erased", lead_key, cause),
        source="leadrouter/scoring",
        type=LIFECYCLE_ERASED,
        time=now,
        subject=lead_key,
        data=LifecycleData(
            transition="erased", lead_key=lead_key, stage="erased", score=0
        ).model_dump(mode="json"),
    )


async def erase(
    session: AsyncSession,
    names: Iterable[str],
    *,
    relay: str,
    lifecycle_topic: str,
    timer_kind: str,
    cause: str,
    now: datetime,
) -> list[CloudEvent]:
    """Erase every lead these names (keys or aliases) point at; the events published for them."""
    names = sorted(set(names))
    bindings = await repository.resolve_aliases(session, names)
    keys = sorted(await repository.lock_leads(session, {*names, *bindings.values()}))
    if not keys:
        return []
    # Awards stored before the tallies, under the lead's key or a key it absorbed.
    await repository.delete_legacy_hits(
        session, {*keys, *await repository.aliases_of(session, keys)}
    )
    await session.execute(
        delete(repository.lead_aliases).where(repository.lead_aliases.c.lead_key.in_(keys))
    )
    await repository.delete_leads(session, keys)
    # Lifecycle rows not yet relayed carry the lead's email and attributes: they go too.
    await session.execute(
        delete(outbox_rows).where(outbox_rows.c.relay == relay, outbox_rows.c.key.in_(keys))
    )
    await session.execute(
        pg_insert(erased_leads).on_conflict_do_nothing(),
        [{"lead_hash": lead_hash(k)} for k in keys],
    )
    await timers.cancel(session, timer_kind, *keys)
    events = [erased_event(k, cause, now) for k in keys]
    await outbox.add_events(session, relay, lifecycle_topic, events)
    return events


async def erased_among(session: AsyncSession, lead_keys: Iterable[str]) -> set[str]:
    """Which of these keys belong to erased leads."""
    by_hash = {lead_hash(k): k for k in lead_keys}
    if not by_hash:
        return set()
    rows = await session.execute(
        select(erased_leads.c.lead_hash).where(erased_leads.c.lead_hash.in_(sorted(by_hash)))
    )
    return {by_hash[h] for h in rows.scalars()}
