"""Alembic both ways on a scratch database; the cleanup job through a real arq worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from auth_service.config import Settings
from auth_service.jobs import JobName
from db.config import current_revision, downgrade, upgrade
from db.models import RefreshToken, TokenBlacklist
from tests.conftest import _PG_ADMIN_URL, _with_database
from tests.factories import create_user


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


def test_migrations_upgrade_downgrade_upgrade() -> None:
    name = f"auth_mig_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_PG_ADMIN_URL)
        await conn.execute(sql)
        await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _with_database(_PG_ADMIN_URL, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        upgrade(url)
        assert current_revision(url) == "0002"
        tables = {"users", "login_records", "token_blacklist", "refresh_tokens", "notifications"}
        assert tables <= asyncio.run(_tables(url))
        downgrade(url)  # one step
        assert current_revision(url) == "0001"
        assert "notifications" not in asyncio.run(_tables(url))
        downgrade(url, "base")
        assert current_revision(url) is None
        assert asyncio.run(_tables(url)) <= {"alembic_version"}
        upgrade(url)
        assert current_revision(url) == "0002"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_cleanup_job_runs_on_a_real_worker_and_deletes_exactly_the_expired_rows(
    settings: Settings, db_session: AsyncSession
) -> None:
    from tasks.worker import WorkerSettings

    user = await create_user(settings, username="dora")
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    db_session.add_all(
        [
            TokenBlacklist(token_jti="old", user_id=user.id, expires_at=now - hour),
            TokenBlacklist(token_jti="live", user_id=user.id, expires_at=now + hour),
            *[
                RefreshToken(
                    token_hash=uuid.uuid4().hex,
                    family_id=uuid.uuid4(),
                    user_id=user.id,
                    issued_at=now - 10 * hour,
                    expires_at=expires,
                    revoked_at=revoked,
                )
                for expires, revoked in [
                    (now - hour, None),  # expired
                    (now + hour, now - 48 * hour),  # revoked long ago
                    (now + hour, now - dt.timedelta(minutes=5)),  # revoked just now: kept
                    (now + hour, None),  # live
                ]
            ],
        ]
    )
    await db_session.commit()

    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    pool = await create_pool(redis_settings)
    job = await pool.enqueue_job(JobName.CLEANUP_EXPIRED_TOKENS.value)
    assert job is not None
    engine = create_async_engine(settings.async_database_url)
    ctx: dict[str, Any] = {"session_factory": async_sessionmaker(engine, expire_on_commit=False)}
    worker = Worker(
        functions=WorkerSettings.functions,
        redis_pool=pool,
        burst=True,
        poll_delay=0.05,
        ctx=ctx,
        handle_signals=False,
    )
    await worker.main()
    assert await job.result(timeout=10) == {"blacklist": 1, "refresh_tokens": 2}
    await worker.close()
    await engine.dispose()

    jtis = (await db_session.execute(select(TokenBlacklist.token_jti))).scalars().all()
    assert jtis == ["live"]
    assert (await db_session.execute(select(func.count()).select_from(RefreshToken))).scalar_one() == 2
