"""The pool's one-round-trip pre-ping (db.config.ping_on_checkout) on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth_service.settings import Settings
from db.config import ping_on_checkout
from tests.conftest import _find_postgres


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """One pooled connection, so every checkout gets the same one back."""
    engine = create_async_engine(settings.database.url, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    admin = await asyncpg.connect(_find_postgres()[0])
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_pooled_connection_killed_by_the_server_is_replaced_before_use(engine: AsyncEngine) -> None:
    ping_on_checkout(engine)
    first = await _backend_pid(engine)
    assert await _backend_pid(engine) == first  # a healthy connection is kept
    await _terminate(first)  # what a PostgreSQL restart does to every pooled connection
    second = await _backend_pid(engine)  # no error reaches the caller
    assert second != first


async def test_without_the_ping_the_dead_connection_reaches_the_caller(engine: AsyncEngine) -> None:
    """The control for the test above: it would pass without the probe only if the pool healed anyway."""
    await _terminate(await _backend_pid(engine))
    with pytest.raises(DBAPIError):
        await _backend_pid(engine)


async def test_the_probe_is_one_statement_outside_any_transaction(engine: AsyncEngine) -> None:
    ping_on_checkout(engine)
    pid = await _backend_pid(engine)
    admin = await asyncpg.connect(_find_postgres()[0])
    try:
        async with engine.connect() as conn:  # the checkout probes; then nothing runs
            probed = await admin.fetchrow("SELECT query, xact_start FROM pg_stat_activity WHERE pid = $1", pid)
            assert conn is not None
    finally:
        await admin.close()
    assert probed is not None
    assert probed["query"] == "SELECT 1" and probed["xact_start"] is None
