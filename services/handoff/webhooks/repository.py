"""SQL for webhook deliveries: one row per (subscription, event), claimed with SKIP LOCKED."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import metadata

TS = DateTime(timezone=True)

deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("subscription", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("lead_key", Text, nullable=False),
    Column("event", LargeBinary, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TS, nullable=False),
    Column("last_error", Text),
    Column("created_at", TS, nullable=False, server_default=func.now()),
    Column("finished_at", TS),
    UniqueConstraint("subscription", "event_id", name="webhook_deliveries_once"),
)
Index(
    "webhook_deliveries_pending",
    deliveries.c.subscription,
    deliveries.c.lead_key,
    deliveries.c.id,
    postgresql_where=deliveries.c.status == "pending",
)
# For the retention rule: finished rows by age, pending rows left out.
Index(
    "webhook_deliveries_finished",
    deliveries.c.finished_at,
    postgresql_where=deliveries.c.status != "pending",
)


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery: the event to POST and how many tries it has had (this one included)."""

    id: int
    subscription: str
    event_id: str
    event: bytes
    attempts: int
    age_s: float


async def add(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries, due now; an event already queued for a subscription is skipped."""
    if rows:
        await session.execute(
            pg_insert(deliveries).values(next_attempt_at=func.now()).on_conflict_do_nothing(),
            list(rows),
        )


# The head of each lead's line only: a later event of the same lead waits until the earlier
# one is delivered or dead, so a subscriber sees one lead's events in order. The claim is a
# lease (next_attempt_at moves past the request's timeout), so no transaction stays open
# during the HTTP call and a crashed worker's rows come back when the lease ends.
CLAIM = text(
    """
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.subscription = :subscription AND d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries e
              WHERE e.subscription = d.subscription AND e.lead_key = d.lead_key
                AND e.status = 'pending' AND e.id < d.id)
        ORDER BY d.id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries w
    SET attempts = w.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease_s)
    FROM due WHERE w.id = due.id
    RETURNING w.id, w.subscription, w.event_id, w.event, w.attempts,
              extract(epoch FROM now() - w.created_at) AS age_s
    """
)


async def claim(
    session: AsyncSession, subscription: str, limit: int, lease_s: float
) -> list[Delivery]:
    """Lease up to `limit` due deliveries of a subscription, at most one per lead, oldest first."""
    rows = await session.execute(
        CLAIM, {"subscription": subscription, "limit": limit, "lease_s": lease_s}
    )
    return sorted(
        (
            Delivery(r.id, r.subscription, r.event_id, r.event, r.attempts, float(r.age_s))
            for r in rows
        ),
        key=lambda d: d.id,
    )


async def finish(session: AsyncSession, delivery_id: int, status: str, error: str | None) -> None:
    """Mark a delivery delivered or dead."""
    await session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(status=status, last_error=error, finished_at=func.now())
    )


async def retry_later(session: AsyncSession, delivery_id: int, delay_s: float, error: str) -> None:
    """Schedule the next try of a failed delivery."""
    await session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(
            last_error=error,
            next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_s),
        )
    )


async def backlog(session: AsyncSession, subscription: str) -> tuple[int, float]:
    """Pending deliveries of a subscription, and the age in seconds of the oldest (0 if none)."""
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(
                    func.extract("epoch", func.now() - func.min(deliveries.c.created_at)), 0
                ),
            ).where(deliveries.c.subscription == subscription, deliveries.c.status == "pending")
        )
    ).one()
    return int(row[0]), float(row[1])


async def delete_finished(session: AsyncSession, older_than_s: float, batch: int) -> int:
    """Delete up to `batch` deliveries finished (delivered or dead) over `older_than_s` ago."""
    doomed = (
        select(deliveries.c.id)
        .where(
            deliveries.c.status != "pending",
            deliveries.c.finished_at
            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s),
        )
        .limit(batch)
        .scalar_subquery()
    )
    result = await session.execute(
        delete(deliveries).where(deliveries.c.id.in_(doomed)).returning(deliveries.c.id)
    )
    return len(result.all())
