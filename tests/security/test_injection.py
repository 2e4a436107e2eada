"""SQL injection and `pg_sleep` payloads in every field a client controls — username, password,
refresh token, logout body, Authorization header — are plain 401/400 envelopes, change nothing
stored, and a `pg_sleep(3)` never makes a response take 3 s (real PostgreSQL behind it)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.settings import Settings
from db.models import LoginRecord, RefreshToken, TokenBlacklist, User
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.security.harness import assert_envelope, hardened_settings, login, running

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
VERIFY = "/api/v1/auth/verify"
# Well under the 3 s a pg_sleep(3) would add; argon2 and a loaded machine stay far below it.
SLEEP_BOUND = 2.0

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "alice' --",
    "alice'/*",
    '" OR ""="',
    "') OR ('1'='1",
    "'; DROP TABLE users; --",
    "' UNION SELECT id, username, password_hash FROM users --",
    "'; SELECT pg_sleep(3); --",
    "' OR (SELECT 1 FROM pg_sleep(3)) IS NOT NULL --",
    "1' AND 1=(SELECT 1 FROM pg_sleep(3))--",
    "'||pg_sleep(3)||'",
    "$$; SELECT pg_sleep(3); $$",
    "\\'; SELECT pg_sleep(3); --",
    "%' AND pg_sleep(3) IS NULL AND '%'='",
]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return hardened_settings(database_url, redis_url)


@pytest.fixture
async def client(settings: Settings) -> Any:
    await create_user(settings, username="alice")
    async with running(settings) as test_client:
        yield test_client


async def _counts(session: AsyncSession) -> dict[str, int]:
    return {
        model.__tablename__: (await session.execute(select(func.count()).select_from(model))).scalar_one()
        for model in (User, RefreshToken, TokenBlacklist)
    }


async def _timed(client: AsyncTestClient[Any], method: str, path: str, **kwargs: Any) -> Any:
    started = time.perf_counter()
    response = await client.request(method, path, **kwargs)
    elapsed = time.perf_counter() - started
    assert elapsed < SLEEP_BOUND, f"{method} {path} {kwargs}: {elapsed:.2f} s"
    return response


def _refused(response: Any, codes: set[str]) -> None:
    assert response.status_code in (400, 401), response.text
    code = "VALIDATION_ERROR" if response.status_code == 400 else response.json()["error"]["code"]
    assert code in codes, response.text
    assert_envelope(response, response.status_code, code)


async def test_injection_in_login_fields_is_a_plain_401(client: AsyncTestClient[Any], db_session: AsyncSession) -> None:
    before = await _counts(db_session)
    for payload in PAYLOADS:
        as_username = await _timed(client, "POST", LOGIN, json={"username": payload, "password": DEFAULT_PASSWORD})
        as_password = await _timed(client, "POST", LOGIN, json={"username": "alice", "password": payload})
        both = await _timed(client, "POST", LOGIN, json={"username": payload, "password": payload})
        for response in (as_username, as_password, both):
            assert_envelope(response, 401, "AUTH_INVALID_CREDENTIALS")
    assert await _counts(db_session) == before
    # Every attempt was recorded as the plain failure it was, under the exact text typed.
    recorded = (
        await db_session.execute(select(LoginRecord.failure_reason, func.count()).group_by(LoginRecord.failure_reason))
    ).all()
    assert dict(recorded) == {"unknown_user": 2 * len(PAYLOADS), "bad_password": len(PAYLOADS)}
    # alice is intact and her password still works.
    assert "access_token" in await login(client, "alice")


async def test_injection_in_tokens_and_headers_is_refused(
    client: AsyncTestClient[Any], db_session: AsyncSession
) -> None:
    tokens = await login(client, "alice")
    before = await _counts(db_session)
    for payload in PAYLOADS:
        refresh = await _timed(client, "POST", REFRESH, json={"refresh_token": payload})
        _refused(refresh, {"VALIDATION_ERROR", "AUTH_TOKEN_INVALID"})
        family_shaped = await _timed(client, "POST", REFRESH, json={"refresh_token": f"{payload}.secret"})
        _refused(family_shaped, {"VALIDATION_ERROR", "AUTH_TOKEN_INVALID"})
        logout_body = await _timed(
            client, "POST", LOGOUT, json={"refresh_token": payload}, headers=bearer("not-a-token")
        )
        _refused(logout_body, {"VALIDATION_ERROR", "AUTH_TOKEN_INVALID"})
        for header in (f"Bearer {payload}", payload, f"Bearer {payload.replace(' ', '')}"):
            verify = await _timed(client, "GET", VERIFY, headers={"Authorization": header})
            assert_envelope(verify, 401, "AUTH_TOKEN_INVALID")
            logout = await _timed(client, "POST", LOGOUT, headers={"Authorization": header})
            assert_envelope(logout, 401, "AUTH_TOKEN_INVALID")
    # With a real access token, an injected refresh_token in the logout body is ignored or refused.
    for payload in PAYLOADS[:3]:
        response = await _timed(
            client, "POST", LOGOUT, json={"refresh_token": payload}, headers=bearer(tokens["access_token"])
        )
        _refused(response, {"VALIDATION_ERROR"})
    assert await _counts(db_session) == before
    assert (await client.get(VERIFY, headers=bearer(tokens["access_token"]))).status_code == 200
