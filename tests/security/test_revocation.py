"""No revoked credential works again, in any order of events (issue: revoked sessions that
come back). Real PostgreSQL and Redis, the app in process.

- Redis losing state (flush, restart, an evicted key) never brings a revoked token back: only
  the refill, which loads every revocation of the user, may write the user's state.
- (Races between refresh or login and a revocation: test_races.py, against a real server.)
- Revocations write PostgreSQL first and leave nothing half-done when either side fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from auth_service.app import create_app
from auth_service.domain.admin.by_name import AdminByName
from auth_service.lib.crypto.tokens import hash_refresh_token
from auth_service.settings import Settings
from db.models import User
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.security.harness import GENEROUS_LIMITS, assert_envelope

LOGIN, REFRESH, LOGOUT, VERIFY = (
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/verify",
)


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, refresh_reuse_grace_seconds=0, **GENEROUS_LIMITS)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def alice(settings: Settings) -> User:
    return await create_user(settings, username="alice")


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()


async def login(client: AsyncTestClient[Any], password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
    response = await client.post(LOGIN, json={"username": "alice", "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Any]:
    """The service's resources on this test's own event loop and engine (the app under the test
    client runs on another loop): what the CLI builds to run an AdminByName."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.container import Resources

    engine = create_async_engine(settings.database.url)
    built = Resources(settings, async_sessionmaker(engine, expire_on_commit=False))
    yield built
    await built.close()
    await engine.dispose()


class users_of:
    """An AdminByName (what the CLI runs) over `resources`."""

    def __init__(self, resources: Any) -> None:
        self._resources = resources

    async def __aenter__(self) -> AdminByName:
        self.session = self._resources.session_factory()
        return AdminByName(self.session, self._resources.hasher, self._resources.revocation)

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()


async def assert_dead(client: AsyncTestClient[Any], tokens: dict[str, Any]) -> None:
    assert_envelope(await client.get(VERIFY, headers=bearer(tokens["access_token"])), 401, "AUTH_TOKEN_REVOKED")
    refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text


async def assert_alive(client: AsyncTestClient[Any], tokens: dict[str, Any]) -> None:
    response = await client.get(VERIFY, headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text


# ---- Redis losing state ---------------------------------------------------------------------


async def test_logged_out_token_stays_dead_after_redis_restarts_empty_and_the_user_logs_in(
    client: AsyncTestClient[Any], alice: User, redis: aioredis.Redis
) -> None:
    a, b = await login(client), await login(client)
    assert (await client.post(LOGOUT, headers=bearer(a["access_token"]))).status_code == 204
    await assert_alive(client, b)  # Redis now holds alice's state, refilled from PostgreSQL
    await redis.flushdb()  # Redis restarted empty
    c = await login(client)  # a login must not claim "Redis knows every revocation of alice"
    assert_envelope(await client.get(VERIFY, headers=bearer(a["access_token"])), 401, "AUTH_TOKEN_REVOKED")
    await assert_alive(client, b)
    await assert_alive(client, c)


async def test_activating_a_user_after_a_flush_does_not_bring_a_logged_out_token_back(
    client: AsyncTestClient[Any], alice: User, redis: aioredis.Redis, resources: Any
) -> None:
    a, b = await login(client), await login(client)
    assert (await client.post(LOGOUT, headers=bearer(a["access_token"]))).status_code == 204
    await redis.flushdb()
    async with users_of(resources) as users:
        await users.set_active("alice", True)  # activate-user on an active user: changes nothing
    assert_envelope(await client.get(VERIFY, headers=bearer(a["access_token"])), 401, "AUTH_TOKEN_REVOKED")
    await assert_alive(client, b)


async def test_no_single_lost_key_brings_a_revoked_token_back(
    client: AsyncTestClient[Any], alice: User, redis: aioredis.Redis
) -> None:
    """An eviction takes one key: whichever it is, revoked stays revoked and live stays live."""
    revoked, live = await login(client), await login(client)
    assert (await client.post(LOGOUT, headers=bearer(revoked["access_token"]))).status_code == 204
    await assert_alive(client, live)
    keys = [key async for key in redis.scan_iter("auth:*")]
    assert any(key.endswith(b":rv") for key in keys), keys
    for key in keys:
        await assert_alive(client, live)  # rebuilds what the previous round deleted
        assert await redis.delete(key) == 1
        assert_envelope(await client.get(VERIFY, headers=bearer(revoked["access_token"])), 401, "AUTH_TOKEN_REVOKED")
        await assert_alive(client, live)


async def test_a_refill_that_arrives_after_its_deadline_writes_nothing(
    client: AsyncTestClient[Any], alice: User, redis: aioredis.Redis, resources: Any
) -> None:
    """A refill write delayed past its deadline (Redis's clock) is refused: a revocation that
    committed meanwhile cannot be overwritten by a state read before it."""
    store = resources.revocation
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    key = store.key(str(alice.id))
    from auth_service.domain.sessions.revocation import UserState

    await store._write(str(alice.id), now_ms - 6000, UserState(True, None), [], [])  # 6 s late
    assert not await redis.exists(key)
    await store._write(str(alice.id), now_ms, UserState(True, None), [], [])
    assert await redis.hget(key, "s") == b"1:0"


async def live_in_family(settings: Settings, refresh_token: str) -> int:
    """Refresh tokens of the token's session that are not revoked (PostgreSQL, the truth)."""
    conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND family_id ="
            " (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
            hash_refresh_token(refresh_token),
        )
        return int(value)
    finally:
        await conn.close()


# ---- nothing half-done (13) -----------------------------------------------------------------


async def test_logout_whose_commit_fails_can_be_retried_and_then_revokes_everything(
    client: AsyncTestClient[Any], alice: User
) -> None:
    """PostgreSQL first: a commit that fails leaves the access token usable for a retry (not
    revoked in Redis alone), and the retry revokes token and session."""
    tokens = await login(client)
    store = client.app.state.resources.revocation
    original = store.commit
    failures = []

    async def failing_commit(session: Any, user_id: Any) -> None:
        async def broken() -> None:
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost at commit"))

        if not failures:
            failures.append(1)
            session.commit = broken
        await original(session, user_id)

    store.commit = failing_commit
    try:
        first = await client.post(LOGOUT, headers=bearer(tokens["access_token"]))
    finally:
        store.commit = original
    assert_envelope(first, 503, "SERVICE_UNAVAILABLE")
    await assert_alive(client, tokens)
    assert (await client.post(LOGOUT, headers=bearer(tokens["access_token"]))).status_code == 204
    await assert_dead(client, tokens)


async def test_theft_detection_with_redis_failing_is_a_503_that_changes_nothing(
    client: AsyncTestClient[Any], alice: User, settings: Settings
) -> None:
    tokens = await login(client)
    successor = (await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})).json()
    redis = client.app.state.resources.revocation._redis
    original = redis.delete

    async def unreachable(*_: Any) -> Any:
        raise RedisConnectionError("Redis went away")

    redis.delete = unreachable
    try:
        replay = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    finally:
        redis.delete = original
    assert_envelope(replay, 503, "SERVICE_UNAVAILABLE")
    assert await live_in_family(settings, tokens["refresh_token"]) == 2  # nothing half-done: no row revoked
    replay = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert_envelope(replay, 401, "AUTH_TOKEN_REVOKED")
    assert await live_in_family(settings, tokens["refresh_token"]) == 0
    await assert_dead(client, successor)
