"""Apply the database migrations (alembic) to head; every service does this on start."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the project's migrations, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Migrate the database to the newest revision."""
    # "heads": feature branches of the schema may each add a head until they are merged.
    command.upgrade(alembic_config(database_url), "heads")


async def upgrade_async(database_url: str) -> None:
    """Migrate from inside a running event loop (alembic's env runs its own loop in a thread)."""
    await asyncio.to_thread(upgrade, database_url)
