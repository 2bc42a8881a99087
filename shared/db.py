"""Database engine, sessions and the shared tables: offsets, processed ids, outbox."""

from datetime import datetime

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
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

metadata = MetaData()

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
)
Index("outbox_relay_id", outbox.c.relay, outbox.c.id)


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine with pre-ping so a restarted Postgres does not break the pool."""
    return create_async_engine(database_url, pool_size=pool_size, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (we read them after the transaction)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock: one clock for every instance, so deadlines agree across hosts."""
    now = await session.scalar(select(func.now()))
    if not isinstance(now, datetime):
        raise RuntimeError("the database did not tell the time")
    return now
