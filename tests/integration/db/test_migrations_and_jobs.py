"""Alembic both ways on a scratch database; the cleanup job through a real arq worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from auth_service.lib.queue import JobName
from auth_service.settings import Settings
from db.config import current_revision, downgrade, upgrade
from db.models import RefreshToken, TokenBlacklist, UserToken
from tests.conftest import _admin, _find_postgres, _with_database
from tests.factories import create_user


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


HEAD = "0011"


def _scratch_database() -> tuple[str, Any]:
    """An empty database of its own, and the function that drops it."""
    name = f"auth_mig_{uuid.uuid4().hex[:8]}"
    admin_url = _find_postgres()[0]
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(admin_url, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    return url, lambda: asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _sql(url: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


_INSERT_USER = (
    "INSERT INTO users (id, username, email, password_hash, created_at, updated_at)"
    " VALUES (gen_random_uuid(), '{}', '{}', 'x', now(), now())"
)


def test_identity_keys_migration_fills_keys_and_then_refuses_case_and_unicode_duplicates() -> None:
    url, drop = _scratch_database()
    try:
        upgrade(url, "0002")
        asyncio.run(_sql(url, _INSERT_USER.format("Alice", "ALICE@Example.com"), _INSERT_USER.format("bob", "b@x.io")))
        upgrade(url)
        (rows,) = asyncio.run(_sql(url, "SELECT username_key, email_key FROM users ORDER BY username_key"))
        assert [tuple(row) for row in rows] == [("alice", "alice@example.com"), ("bob", "b@x.io")]
        # PostgreSQL's lower() and Python disagree on İ; the keys are Python's, so this is a duplicate.
        with pytest.raises(asyncpg.UniqueViolationError):
            asyncio.run(
                _sql(
                    url,
                    "INSERT INTO users (id, username, username_key, email, email_key, password_hash,"
                    " created_at, updated_at) VALUES (gen_random_uuid(), 'x', 'bob', 'y@x.io', 'y@x.io',"
                    " 'x', now(), now())",
                )
            )
    finally:
        drop()


def test_identity_keys_migration_names_clashing_accounts_instead_of_failing_on_an_index() -> None:
    url, drop = _scratch_database()
    try:
        upgrade(url, "0002")
        # lower() keeps these apart (ß vs SS), case folding does not.
        asyncio.run(_sql(url, _INSERT_USER.format("straße", "a@x.io"), _INSERT_USER.format("STRASSE", "b@x.io")))
        with pytest.raises(RuntimeError, match="differ only by case or Unicode form"):
            upgrade(url)
        assert current_revision(url) == "0002"  # the migration's transaction was rolled back
    finally:
        drop()


def test_unusable_passwords_migration_marks_the_invited_users_who_never_set_one() -> None:
    url, drop = _scratch_database()
    try:
        upgrade(url, "0006")
        users = {name: uuid.uuid4() for name in ("waiting", "accepted", "reset_by_cli", "plain")}
        statements = [
            "INSERT INTO users (id, username, username_key, email, email_key, password_hash, created_at, updated_at)"
            f" VALUES ('{uid}', '{name}', '{name}', '{name}@x.io', '{name}@x.io', '$argon2id$v=19$m=8,t=1,p=1$x', now(), now())"
            for name, uid in users.items()
        ]
        event = "INSERT INTO audit_events (id, action, target_type, target_id, details) VALUES (gen_random_uuid(), '{}', 'user', '{}', '{}')"
        for name in ("waiting", "accepted", "reset_by_cli"):
            statements.append(event.format("user.create", users[name], '{"invited": true}'))
        statements.append(event.format("user.create", users["plain"], '{"invited": false}'))
        statements.append(event.format("password.reset", users["accepted"], "{}"))
        statements.append(event.format("user.update", users["reset_by_cli"], '{"fields": ["password"]}'))
        asyncio.run(_sql(url, *statements))
        upgrade(url)
        (rows,) = asyncio.run(_sql(url, "SELECT username, password_hash FROM users ORDER BY username"))
        marked = {row["username"] for row in rows if row["password_hash"].startswith("!")}
        assert marked == {"waiting"}
        downgrade(url, "0006")
        (rows,) = asyncio.run(_sql(url, "SELECT password_hash FROM users"))
        assert not any(row["password_hash"].startswith("!") for row in rows)
    finally:
        drop()


def test_links_migration_binds_live_links_to_the_address_and_ends_those_older_than_an_email_change() -> None:
    url, drop = _scratch_database()
    try:
        upgrade(url, "0006")
        user = (
            "INSERT INTO users (id, username, username_key, email, email_key, password_hash, created_at, updated_at)"
            " VALUES (gen_random_uuid(), '{0}', '{0}', '{1}', lower('{1}'), 'x', now(), now())"
        )
        asyncio.run(_sql(url, user.format("kept", "Kept@x.io"), user.format("moved", "new@x.io")))
        link = (
            "INSERT INTO user_tokens (id, purpose, token_hash, user_id, created_at, expires_at)"
            " SELECT gen_random_uuid(), 'reset', md5(random()::text), id, now() - interval '1 minute',"
            " now() + interval '1 hour' FROM users WHERE username = '{}'"
        )
        moved = (
            "INSERT INTO audit_events (id, action, target_type, target_id)"
            " SELECT gen_random_uuid(), 'email.change', 'user', id::text FROM users WHERE username = 'moved'"
        )
        asyncio.run(_sql(url, link.format("kept"), link.format("moved"), moved))
        upgrade(url)
        (rows,) = asyncio.run(
            _sql(
                url,
                "SELECT u.username, t.email, t.used_at IS NOT NULL AS ended FROM user_tokens t"
                " JOIN users u ON u.id = t.user_id ORDER BY u.username",
            )
        )
        assert [tuple(row) for row in rows] == [("kept", "kept@x.io", False), ("moved", None, True)]
    finally:
        drop()


def test_migrations_upgrade_downgrade_upgrade() -> None:
    url, drop = _scratch_database()
    try:
        upgrade(url)
        assert current_revision(url) == HEAD
        tables = {"users", "login_records", "token_blacklist", "refresh_tokens", "notifications", "audit_events"}
        second_factors = {"mfa_totp", "mfa_recovery_codes", "webauthn_credentials"}
        oauth = {"signing_keys", "oauth_clients", "oauth_consents"}
        assert tables | second_factors | oauth <= asyncio.run(_tables(url))
        downgrade(url)  # one step: the keys and OAuth tables go
        assert current_revision(url) == "0010"
        assert not oauth & asyncio.run(_tables(url))
        downgrade(url)  # one step: refresh_tokens.amr goes
        assert current_revision(url) == "0009"
        downgrade(url)
        assert current_revision(url) == "0008"
        assert not second_factors & asyncio.run(_tables(url))
        downgrade(url)
        assert current_revision(url) == "0007"
        downgrade(url)
        assert current_revision(url) == "0006"
        downgrade(url, "0005")
        assert current_revision(url) == "0005"
        assert "audit_events" not in asyncio.run(_tables(url))
        downgrade(url, "0001")
        assert "notifications" not in asyncio.run(_tables(url))
        downgrade(url, "base")
        assert current_revision(url) is None
        assert asyncio.run(_tables(url)) <= {"alembic_version"}
        upgrade(url)
        assert current_revision(url) == HEAD
    finally:
        drop()


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
    for expires, used in ((now - hour, None), (now + hour, now - hour), (now + hour, None)):  # expired, used, live
        db_session.add(
            UserToken(purpose="reset", token_hash=uuid.uuid4().hex, user_id=user.id, expires_at=expires, used_at=used)
        )
    await db_session.commit()

    redis_settings = RedisSettings.from_dsn(settings.redis.url)
    pool = await create_pool(redis_settings)
    job = await pool.enqueue_job(JobName.CLEANUP_EXPIRED_TOKENS.value)
    assert job is not None
    engine = create_async_engine(settings.database.url)
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
    assert await job.result(timeout=10) == {"blacklist": 1, "refresh_tokens": 2, "user_tokens": 2}
    await worker.close()
    await engine.dispose()

    jtis = (await db_session.execute(select(TokenBlacklist.token_jti))).scalars().all()
    assert jtis == ["live"]
    assert (await db_session.execute(select(func.count()).select_from(RefreshToken))).scalar_one() == 2
    assert (await db_session.execute(select(UserToken.used_at, UserToken.expires_at > now))).all() == [(None, True)]


async def test_the_models_and_the_migrations_describe_the_same_schema(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to do on a database built by the migrations."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.models import metadata

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    finally:
        await engine.dispose()
    assert diff == []


def test_concurrent_set_ups_of_the_service_role_all_succeed() -> None:
    """Two `just init`s (or test workers) at once: CREATE ROLE and ALTER ROLE collide on the
    cluster's catalogue ("tuple concurrently updated", a duplicate role); each set-up retries."""
    from db.roles import grant_service_role

    url, drop = _scratch_database()
    role = f"auth_race_{uuid.uuid4().hex[:8]}"
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        upgrade(url)

        async def six_at_once() -> None:
            await asyncio.gather(*(grant_service_role(dsn, role, f"password-{i}") for i in range(6)))

        asyncio.run(six_at_once())
        (rows,) = asyncio.run(_sql(url, f"SELECT count(*) AS n FROM pg_roles WHERE rolname = '{role}'"))
        assert rows[0]["n"] == 1
    finally:
        drop()
        asyncio.run(_admin(_find_postgres()[0], f'DROP ROLE IF EXISTS "{role}"'))
