"""The board's live feed hears committed changes to handoffs and reps, and nothing uncommitted."""

import asyncio

import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.handoff.board.feed import CHANNEL, ChangeFeed
from services.handoff.repository import reps
from shared.db import make_engine, make_sessionmaker

pytestmark = pytest.mark.integration

REP = {
    "rep_id": "rep-x",
    "name": "X",
    "team": "sales",
    "weight": 1,
    "active": True,
    "assigned_total": 0,
    "capacity": 5,
    "available": True,
}


async def announce_sentinel(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Commit a notification of our own: PostgreSQL delivers notifications in commit order, so
    anything announced before it reaches a subscriber first."""
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT pg_notify(:channel, 'sentinel')"), {"channel": CHANNEL})


async def next_change(changes: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(changes.get(), 5)


async def test_a_change_reaches_subscribers_when_its_transaction_commits(database_url: str) -> None:
    feed = ChangeFeed(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with feed.subscribe() as changes, feed.subscribe() as other_page:
            await asyncio.wait_for(feed.listening.wait(), 10)
            async with sessions() as session, session.begin():
                await session.execute(insert(reps).values(**REP))
                await announce_sentinel(sessions)
                assert await next_change(changes) == "sentinel", (
                    "an uncommitted change was announced"
                )
                assert await next_change(other_page) == "sentinel"
            assert await next_change(changes) == "reps"
            assert await next_change(other_page) == "reps"

            async with sessions() as session, session.begin():
                await session.execute(update(reps).values(available=False))
                await session.rollback()
            await announce_sentinel(sessions)
            assert await next_change(changes) == "sentinel", "a rolled-back change was announced"
    finally:
        await feed.close()
        await engine.dispose()


async def test_a_slow_page_gets_one_catch_all_instead_of_a_backlog(database_url: str) -> None:
    feed = ChangeFeed(database_url)
    try:
        async with feed.subscribe() as changes:
            for _ in range(40):
                feed.publish("handoffs")
            drained = []
            while not changes.empty():
                drained.append(changes.get_nowait())
            assert "*" in drained and len(drained) <= 16
    finally:
        await feed.close()
