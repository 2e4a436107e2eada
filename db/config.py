"""Database wiring from plain arguments: engine options and Alembic commands.

`db` knows nothing of the service's Settings; callers pass URLs and sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "downgrade", "engine_options", "upgrade"]


def engine_options(
    *,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    connect_timeout: float,
    statement_timeout: float,
) -> dict[str, Any]:
    """Engine keyword arguments for a request-serving pool that fails fast instead of piling up.

    - `pool_timeout`: seconds a request waits for a pooled connection (then sqlalchemy's TimeoutError);
    - `connect_timeout`: seconds to open a connection (asyncpg `timeout`);
    - `statement_timeout`: seconds per statement, enforced by the client (asyncpg `command_timeout`,
      which also bounds the pre-ping of a connection to a frozen server) and by the server
      (`statement_timeout`, so PostgreSQL stops work nobody waits for any more);
    - `pool_pre_ping`: connections left over from before a PostgreSQL restart are tested on
      checkout and replaced, so a restart costs no request an error.
    """
    return {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout,
        "pool_pre_ping": True,
        "connect_args": {
            "timeout": connect_timeout,
            "command_timeout": statement_timeout,
            "server_settings": {"statement_timeout": str(int(statement_timeout * 1000))},
        },
    }


def alembic_config(database_url: str) -> Config:
    """An Alembic Config for our migrations against `database_url` (asyncpg form)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat `%` in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    async def _read() -> str | None:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        finally:
            await engine.dispose()

    return asyncio.run(_read())
