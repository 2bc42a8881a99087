"""Database engine, sessions and the shared tables: offsets, processed ids, outbox, timers."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared import jsoncodec

metadata = MetaData()


def parking_columns() -> tuple[Column[Any], ...]:
    """Failures so far, the last error, and when the row was parked.

    A worker sets a row aside (parks it) after its last allowed failure instead of retrying it
    for ever, so one bad row never stops the others.
    """
    return (
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Column("parked_at", DateTime(timezone=True)),
    )


consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer_group", Text, primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer_group", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Where the event was read: pruning keeps an id while its offset could still be redelivered.
    Column("topic", Text),
    Column("partition", Integer),
    Column("kafka_offset", BigInteger),
    Index("processed_events_processed_at", "processed_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("relay", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *parking_columns(),  # permanent publish failures
    Index("outbox_relay_id", "relay", "id"),
    Index(
        "outbox_relay_pending",
        "relay",
        "id",
        postgresql_where=text("parked_at IS NULL"),
    ),
)

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *parking_columns(),  # failed firings
    Index("timers_kind_key", "kind", "key", unique=True),
    Index("timers_due", "due_at"),
    # The runner counts parked timers after every batch: a count over the few parked rows.
    Index("timers_parked", "kind", postgresql_where=text("parked_at IS NOT NULL")),
)


def make_engine(database_url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """An async engine with pre-ping so a restarted Postgres does not break the pool.

    JSONB goes through orjson (jsoncodec): a lead's row is mostly JSON, read and written
    once per event. `pre_ping=False` is for loops that retry a failed transaction anyway
    (consumer, outbox relay): the ping is one more round trip before every transaction.
    """
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        pool_pre_ping=pre_ping,
        json_serializer=jsoncodec.dumps,
        json_deserializer=jsoncodec.loads,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (we read them after the transaction)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock: one clock for every instance, so deadlines agree across hosts."""
    now = await session.scalar(select(func.now()))
    if not isinstance(now, datetime):
        raise RuntimeError("the database did not tell the time")
    return now


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, that transaction begun.

    For hot paths that send set-based statements straight to asyncpg (no SQLAlchemy statement
    or row processing) inside the same transaction as the session's other statements. JSON
    and JSONB values come back decoded (the engine's codecs) and go in as JSON text.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: a statement
    sent to asyncpg before any through the session would run outside the transaction (and
    commit on its own), so the adapter's transaction is begun here first if it was not.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapter: Any = raw.dbapi_connection  # the asyncpg adapter (its private transaction hooks)
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        await adapter._start_transaction()
    return raw.driver_connection
