"""The migrations build exactly the tables the code declares (alembic's compare_metadata)."""

import importlib
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import metadata

# Every module that declares tables on the shared metadata.
TABLE_MODULES = (
    "shared.db",
    "shared.audit",
    "shared.backtest_jobs",
    "services.scoring.repository",
    "services.scoring.erasure",
    "services.handoff.repository",
    "services.handoff.goals_repository",
    "services.handoff.webhooks.repository",
)


async def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    for module in TABLE_MODULES:
        importlib.import_module(module)
    engine = create_async_engine(database_url)

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": False}
        )
        return [d for d in compare_metadata(context, metadata) if not _is_alembic_version(d)]

    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == [], "migrations and table definitions disagree:\n" + "\n".join(
        map(str, differences)
    )


def _is_alembic_version(difference: Any) -> bool:
    return "alembic_version" in str(difference)
