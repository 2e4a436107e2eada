"""Database wiring from plain arguments: engine options and Alembic commands.

`db` knows nothing of the service's Settings; callers pass URLs and sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from asyncpg.exceptions import InterfaceError, OperatorInterventionError, PostgresConnectionError
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "downgrade",
    "engine_options",
    "ping_on_checkout",
    "upgrade",
]


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
      (`statement_timeout`, so PostgreSQL stops work nobody waits for any more).

    Pair it with `ping_on_checkout(engine)`, which tests connections as they leave the pool.
    """
    return {
        # Errors and logs never carry statement parameters: they hold password hashes and tokens.
        "hide_parameters": True,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout,
        "connect_args": {
            "timeout": connect_timeout,
            "command_timeout": statement_timeout,
            "server_settings": {"statement_timeout": str(int(statement_timeout * 1000))},
        },
    }


_FRESH = "auth_service.fresh"
# What a lost connection raises: socket errors, "connection was closed in the middle of operation",
# "terminating connection due to administrator command" (a restart), "connection is closed".
_DISCONNECTS = (OSError, PostgresConnectionError, OperatorInterventionError, InterfaceError)


def ping_on_checkout(engine: AsyncEngine) -> None:
    """SQLAlchemy's `pool_pre_ping`, in one round trip instead of three.

    Connections left over from before a PostgreSQL restart are found as they leave the pool,
    and the whole pool is replaced, so a restart costs no request an error. The built-in
    pre-ping wraps its probe in BEGIN and ROLLBACK (for PgBouncer's transaction mode), which
    made it 4 of a login's 12 round trips; here the probe is one `SELECT 1` (simple query
    protocol). A connection opened for this checkout is not probed. A probe that times out
    (a frozen server: asyncpg's `command_timeout`) fails the request with a 503, as the
    built-in one does; a connection that fails its probe otherwise (a protocol state left by
    an operation cut short) is replaced alone.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "connect")
    def _opened(dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True

    @event.listens_for(pool, "checkout")
    def _probe(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.pop(_FRESH, False):
            return
        try:
            dbapi_connection.run_async(lambda driver: driver.execute("SELECT 1"))
        except TimeoutError:
            # A frozen server (asyncpg's `command_timeout`): fail this request now rather than
            # spend a connect timeout too; the pool discards the connection.
            raise
        except _DISCONNECTS as exc:
            # The server went away: retry with a new connection, and drop every older one.
            raise InvalidatePoolError(f"pre-ping: {type(exc).__name__}") from exc
        except Exception as exc:
            # This connection alone is unusable (a protocol state left behind by an operation
            # cut short): retry with a new one.
            raise DisconnectionError(f"pre-ping: {type(exc).__name__}") from exc


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
