"""Login, refresh, logout and verify against real PostgreSQL and Redis (app in process)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.lib.crypto.tokens import hash_refresh_token
from auth_service.settings import Settings
from db.models import LoginRecord, RefreshToken, TokenBlacklist, User
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login

TOKEN_PAIR_KEYS = {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}


async def verify(client: AsyncTestClient[Any], access_token: str) -> Any:
    return await client.get("/api/v1/auth/verify", headers=bearer(access_token))


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) >= {"code", "message", "timestamp", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]


async def test_login_returns_token_pair_and_records_success(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": "ALICE", "password": DEFAULT_PASSWORD},
        headers={"User-Agent": "pytest-agent"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_PAIR_KEYS
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and body["refresh_expires_in"] == 604800
    assert response.headers["cache-control"] == "no-store"
    record = (await db_session.execute(select(LoginRecord))).scalar_one()
    assert record.success and record.user_id == alice.id and record.failure_reason is None
    assert record.ip_address == "testclient" or record.ip_address
    assert record.user_agent == "pytest-agent"


async def test_verify_returns_the_contract_shape(client: AsyncTestClient[Any], alice: User) -> None:
    tokens = await login(client)
    response = await verify(client, tokens["access_token"])
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["user_id"] == str(alice.id)
    assert body["username"] == "alice" and body["roles"] == ["user"]
    expires_at = dt.datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert 3500 < (expires_at - dt.datetime.now(dt.UTC)).total_seconds() <= 3600


async def test_credential_failures_look_identical_and_keep_the_reason(
    client: AsyncTestClient[Any], settings: Settings, db_session: AsyncSession
) -> None:
    await create_user(settings, username="bob")
    await create_user(settings, username="carol", is_active=False)
    attempts = [("nobody", DEFAULT_PASSWORD), ("bob", "wrong password!"), ("carol", DEFAULT_PASSWORD)]
    bodies = []
    for username, password in attempts:
        response = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert_error(response, 401, "AUTH_INVALID_CREDENTIALS")
        error = response.json()["error"]
        bodies.append((error["message"], response.headers.get("www-authenticate")))
    assert len(set(bodies)) == 1
    rows = (
        await db_session.execute(select(LoginRecord.username, LoginRecord.failure_reason, LoginRecord.success))
    ).all()
    assert sorted(rows) == [
        ("bob", "bad_password", False),
        ("carol", "inactive", False),
        ("nobody", "unknown_user", False),
    ]


async def test_legacy_bcrypt_login_upgrades_the_hash(
    client: AsyncTestClient[Any], settings: Settings, db_session: AsyncSession
) -> None:
    user = await create_user(settings, username="legacy", legacy_bcrypt=True)
    await login(client, "legacy")
    stored = (await db_session.execute(select(User.password_hash).where(User.id == user.id))).scalar_one()
    assert stored.startswith("$argon2id$")
    await login(client, "legacy")  # and the new hash works


async def test_refresh_rotates_and_old_token_is_spent(client: AsyncTestClient[Any], alice: User) -> None:
    first = await login(client)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = response.json()
    assert set(second) == TOKEN_PAIR_KEYS
    assert second["refresh_token"] != first["refresh_token"]
    assert (await verify(client, second["access_token"])).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_rotation_rows_link_and_keep_what_they_had(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    """The one-statement rotation spends the old row in place (its hash and lifetime unchanged),
    links it to a successor of the same family and owner, and writes nothing else."""
    first = await login(client)
    old = (
        await db_session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(first["refresh_token"]))
        )
    ).scalar_one()
    old_expires = old.expires_at
    db_session.expunge_all()
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = response.json()["refresh_token"]
    rows = (await db_session.execute(select(RefreshToken).where(RefreshToken.user_id == alice.id))).scalars().all()
    assert len(rows) == 2
    spent = next(r for r in rows if r.id == old.id)
    successor = next(r for r in rows if r.id != old.id)
    assert spent.token_hash == hash_refresh_token(first["refresh_token"])
    assert spent.expires_at == old_expires
    assert spent.spent_at is not None and spent.revoked_at is None
    assert spent.replaced_by_id == successor.id
    assert successor.token_hash == hash_refresh_token(second)
    assert (successor.family_id, successor.user_id) == (spent.family_id, alice.id)
    assert successor.spent_at is None and successor.expires_at > spent.spent_at


async def test_repeat_within_grace_gets_the_same_successor(client: AsyncTestClient[Any], alice: User) -> None:
    tokens = await login(client)
    one = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    two = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert one.status_code == two.status_code == 200
    assert one.json()["refresh_token"] == two.json()["refresh_token"]
    assert (await verify(client, two.json()["access_token"])).status_code == 200


async def test_concurrent_refreshes_never_mint_two_live_successors(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    tokens = await login(client)
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    live = await db_session.execute(
        select(func.count()).select_from(RefreshToken).where(RefreshToken.spent_at.is_(None))
    )
    assert live.scalar_one() == 1


async def test_reuse_after_grace_revokes_the_whole_family(
    settings: Settings, database_url: str, redis_url: str, alice: User
) -> None:
    from auth_service.app import create_app
    from tests.conftest import make_settings

    no_grace = make_settings(database_url, redis_url, refresh_reuse_grace_seconds=0)
    async with AsyncTestClient(app=create_app(no_grace)) as client:
        tokens = await login(client)
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
        await asyncio.sleep(0.01)
        reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_error(reuse, 401, "AUTH_TOKEN_REVOKED")
        # The thief's successor and the session's access tokens are dead too.
        assert_error(
            await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
            401,
            "AUTH_TOKEN_REVOKED",
        )
        assert_error(await verify(client, rotated["access_token"]), 401, "AUTH_TOKEN_REVOKED")
        assert_error(await verify(client, tokens["access_token"]), 401, "AUTH_TOKEN_REVOKED")
        # Other sessions of the same user live on.
        other = await login(client)
        assert (await verify(client, other["access_token"])).status_code == 200


async def test_unknown_and_expired_refresh_tokens(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    assert_error(await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}), 401, "AUTH_TOKEN_INVALID")
    tokens = await login(client)
    row = (await db_session.execute(select(RefreshToken))).scalar_one()
    row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await db_session.commit()
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(response, 401, "AUTH_TOKEN_EXPIRED")


async def test_logout_revokes_access_token_and_session(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession, settings: Settings
) -> None:
    tokens = await login(client)
    other = await login(client)
    response = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 204 and response.content == b""
    assert_error(await verify(client, tokens["access_token"]), 401, "AUTH_TOKEN_REVOKED")
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
        "AUTH_TOKEN_REVOKED",
    )
    assert (await verify(client, other["access_token"])).status_code == 200
    row = (await db_session.execute(select(TokenBlacklist))).scalar_one()
    assert row.user_id == alice.id
    remaining = row.expires_at - dt.datetime.now(dt.UTC)
    assert abs(remaining.total_seconds() - 3600) < 5  # the blacklist row lives as long as the token
    # Redis holds it in the user's revocation hash, rebuilt from PostgreSQL by the verify above.
    redis = aioredis.Redis.from_url(settings.redis.url)
    marks = await redis.hgetall(f"auth:{{{alice.id}}}:rv")
    await redis.aclose()
    assert marks[f"j:{row.token_jti}".encode()] == b"1" and marks[b"s"] == b"1:0"


async def test_logout_with_refresh_token_in_body_revokes_that_family(client: AsyncTestClient[Any], alice: User) -> None:
    web = await login(client)
    phone = await login(client)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}, headers=bearer(web["access_token"])
    )
    assert response.status_code == 204
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}),
        401,
        "AUTH_TOKEN_REVOKED",
    )


async def test_logout_everywhere_kills_every_session_but_not_later_logins(
    client: AsyncTestClient[Any], alice: User
) -> None:
    sessions = [await login(client) for _ in range(3)]
    response = await client.post(
        "/api/v1/auth/logout", json={"everywhere": True}, headers=bearer(sessions[0]["access_token"])
    )
    assert response.status_code == 204
    for tokens in sessions:
        assert_error(await verify(client, tokens["access_token"]), 401, "AUTH_TOKEN_REVOKED")
        assert_error(
            await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
            401,
            "AUTH_TOKEN_REVOKED",
        )
    fresh = await login(client)  # same second as the revocation, still good
    assert (await verify(client, fresh["access_token"])).status_code == 200


async def test_revocation_survives_a_redis_flush(client: AsyncTestClient[Any], alice: User, settings: Settings) -> None:
    revoked = await login(client)
    live = await login(client)
    await client.post("/api/v1/auth/logout", headers=bearer(revoked["access_token"]))
    redis = aioredis.Redis.from_url(settings.redis.url)
    await redis.flushdb()
    # PostgreSQL is the source of truth: the cold path refills Redis from it.
    assert_error(await verify(client, revoked["access_token"]), 401, "AUTH_TOKEN_REVOKED")
    assert (await verify(client, live["access_token"])).status_code == 200
    assert await redis.hexists(f"auth:{{{alice.id}}}:rv", "s")
    await redis.aclose()
    assert_error(await verify(client, revoked["access_token"]), 401, "AUTH_TOKEN_REVOKED")


async def test_deactivation_and_password_change_revoke_tokens(
    client: AsyncTestClient[Any], alice: User, settings: Settings
) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.container import Resources
    from auth_service.domain.admin.by_name import AdminByName

    tokens = await login(client)
    engine = create_async_engine(settings.database.url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    resources = Resources(settings, factory)
    async with factory() as session:
        await AdminByName(session, resources.hasher, resources.revocation).set_password("alice", "a brand new password")
    assert_error(await verify(client, tokens["access_token"]), 401, "AUTH_TOKEN_REVOKED")
    tokens = await login(client, password="a brand new password")
    assert (await verify(client, tokens["access_token"])).status_code == 200
    async with factory() as session:
        await AdminByName(session, resources.hasher, resources.revocation).set_active("alice", False)
    assert_error(await verify(client, tokens["access_token"]), 401, "AUTH_TOKEN_REVOKED")
    response = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "a brand new password"})
    assert_error(response, 401, "AUTH_INVALID_CREDENTIALS")
    await resources.close()
    await engine.dispose()


async def test_reactivated_user_gets_working_tokens(
    client: AsyncTestClient[Any], alice: User, settings: Settings
) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.container import Resources
    from auth_service.domain.admin.by_name import AdminByName

    await login(client)
    engine = create_async_engine(settings.database.url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    resources = Resources(settings, factory)
    for active in (False, True):
        async with factory() as session:
            await AdminByName(session, resources.hasher, resources.revocation).set_active("alice", active)
    await resources.close()
    await engine.dispose()
    tokens = await login(client)
    assert (await verify(client, tokens["access_token"])).status_code == 200


async def test_with_redis_down_verify_asks_postgres_and_logout_changes_nothing(
    settings: Settings, database_url: str, alice: User, db_session: AsyncSession
) -> None:
    from auth_service.app import create_app
    from tests.conftest import free_port, make_settings

    async with AsyncTestClient(app=create_app(settings)) as healthy:
        revoked = await login(healthy)
        live = await login(healthy)
        assert (await healthy.post("/api/v1/auth/logout", headers=bearer(revoked["access_token"]))).status_code == 204
    blacklisted_before = (await db_session.execute(select(func.count()).select_from(TokenBlacklist))).scalar_one()

    broken = make_settings(database_url, f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(app=create_app(broken)) as client:
        assert (await verify(client, live["access_token"])).status_code == 200
        assert_error(await verify(client, revoked["access_token"]), 401, "AUTH_TOKEN_REVOKED")
        response = await client.post("/api/v1/auth/logout", headers=bearer(live["access_token"]))
        assert_error(response, 503, "SERVICE_UNAVAILABLE")
        assert (await verify(client, live["access_token"])).status_code == 200
    blacklisted_after = (await db_session.execute(select(func.count()).select_from(TokenBlacklist))).scalar_one()
    assert blacklisted_after == blacklisted_before


async def test_a_login_waiting_for_its_hash_holds_no_database_connection(
    client: AsyncTestClient[Any], alice: User, settings: Settings
) -> None:
    """Logins queue for the hash pool; if each held a pooled connection meanwhile, a burst of
    logins would starve refresh, logout and every other endpoint of the database."""
    import asyncpg

    hasher = client.app.state.resources.hasher
    original = hasher.verify
    seen: list[int] = []

    async def watching_verify(stored_hash: str | None, password: str) -> Any:
        # Runs in the app's event loop, where the login is about to hash: who holds a transaction?
        conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            seen.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        finally:
            await conn.close()
        return await original(stored_hash, password)

    hasher.verify = watching_verify
    try:
        assert (await login(client))["access_token"]
    finally:
        hasher.verify = original
    assert seen == [0]
