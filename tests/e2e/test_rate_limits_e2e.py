"""Rate limits seen by real HTTP clients: concurrency, proxies, two instances behind nginx,
and Redis dying and coming back under a running server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.settings import Settings
from db.models import LoginRecord
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user

LOGIN = "/api/v1/auth/login"


async def _concurrent_logins(bases: list[str], count: int, **headers: str) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *(
                http.post(bases[i % len(bases)] + LOGIN, json={"username": "nobody", "password": "x"}, headers=headers)
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


async def test_concurrent_logins_let_exactly_the_limit_through(settings: Settings, tmp_path: Path) -> None:
    with api_server(settings, tmp_path, RATE_LIMIT_LOGIN="4/minute") as base:
        statuses = await _concurrent_logins([base], 30)
    assert statuses.count(401) == 4  # went through to the (failing) password check
    assert statuses.count(429) == 26


async def test_forwarded_for_is_ignored_from_untrusted_peers(settings: Settings, tmp_path: Path) -> None:
    with api_server(settings, tmp_path, RATE_LIMIT_LOGIN="2/minute") as base, httpx.Client(base_url=base) as http:
        statuses = [
            http.post(
                LOGIN, json={"username": "x", "password": "y"}, headers={"X-Forwarded-For": f"198.51.100.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert statuses == [401, 401, 429, 429]


async def test_forwarded_for_is_honoured_from_trusted_proxies(settings: Settings, tmp_path: Path) -> None:
    with (
        api_server(settings, tmp_path, RATE_LIMIT_LOGIN="2/minute", TRUSTED_PROXIES="127.0.0.0/8") as base,
        httpx.Client(base_url=base) as http,
    ):
        # Each client address has its own budget; what a client writes left of the last hop is ignored.
        statuses = [
            http.post(
                LOGIN, json={"username": "x", "password": "y"}, headers={"X-Forwarded-For": f"6.6.6.6, 198.51.100.{i}"}
            ).status_code
            for i in range(4)
        ]
        assert statuses == [401, 401, 401, 401]
        same = [
            http.post(
                LOGIN, json={"username": "x", "password": "y"}, headers={"X-Forwarded-For": f"{i}.1.1.1, 203.0.113.5"}
            ).status_code
            for i in range(3)
        ]
    assert same == [401, 401, 429]


async def test_username_failure_budget_spares_the_users_known_ip(
    settings: Settings, tmp_path: Path, db_session: AsyncSession
) -> None:
    await create_user(settings, username="alice")
    env = {"RATE_LIMIT_LOGIN_FAILURES": "2/15minute", "TRUSTED_PROXIES": "127.0.0.1"}
    with api_server(settings, tmp_path, **env) as base, httpx.Client(base_url=base) as http:

        def attempt(ip: str, password: str) -> httpx.Response:
            return http.post(LOGIN, json={"username": "Alice", "password": password}, headers={"X-Forwarded-For": ip})

        assert attempt("198.51.100.1", DEFAULT_PASSWORD).status_code == 200  # the user, from home
        assert [attempt(f"203.0.113.{i}", "guess").status_code for i in range(2)] == [401, 401]
        locked = attempt("203.0.113.99", DEFAULT_PASSWORD)  # right password, unknown place
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert attempt("198.51.100.1", DEFAULT_PASSWORD).status_code == 200  # home still works
    records = (await db_session.execute(select(func.count()).select_from(LoginRecord))).scalar_one()
    assert records == 4  # the refused attempt never reached the password check


async def test_two_instances_behind_nginx_share_one_limit(
    settings: Settings, tmp_path: Path, nginx_in_front: Any
) -> None:
    env = {"RATE_LIMIT_LOGIN": "5/minute", "TRUSTED_PROXIES": "127.0.0.1"}
    with api_server(settings, tmp_path, **env) as one, api_server(settings, tmp_path, **env) as two:
        ports = [int(one.rsplit(":", 1)[1]), int(two.rsplit(":", 1)[1])]
        balanced = nginx_in_front(ports)
        statuses = await _concurrent_logins([balanced], 20)
        assert statuses.count(401) == 5 and statuses.count(429) == 15
        # And directly, alternating between the instances: the same shared budget is spent.
        direct = await _concurrent_logins([one, two], 6, **{"X-Forwarded-For": "192.0.2.77"})
        assert direct.count(401) == 5 and direct.count(429) == 1


async def test_redis_outage_fails_login_closed_and_recovers(
    settings: Settings, tmp_path: Path, own_redis: Any, db_session: AsyncSession
) -> None:
    from tests.conftest import make_settings

    await create_user(settings, username="alice")
    local = make_settings(settings.database.owner_url, own_redis.url)
    with (
        api_server(local, tmp_path, RATE_LIMIT_LOGIN="100/minute") as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        creds = {"username": "alice", "password": DEFAULT_PASSWORD}
        tokens = http.post(LOGIN, json=creds).json()
        records_before = (await db_session.execute(select(func.count()).select_from(LoginRecord))).scalar_one()

        own_redis.stop()
        login = http.post(LOGIN, json=creds)
        assert login.status_code == 503 and login.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        refresh = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 503 and refresh.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        # Fail open by default for the rest; revocation is answered by PostgreSQL.
        assert http.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"])).status_code == 200
        assert http.get("/api/v1/health").status_code == 503
        records_during = (await db_session.execute(select(func.count()).select_from(LoginRecord))).scalar_one()
        assert records_during == records_before  # no password check happened

        own_redis.start()
        deadline = time.monotonic() + 15
        while http.get("/api/v1/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert http.post(LOGIN, json=creds).status_code == 200
        refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200


async def test_fail_closed_setting_applies_to_other_endpoints(
    settings: Settings, tmp_path: Path, own_redis: Any
) -> None:
    from tests.conftest import make_settings

    local = make_settings(settings.database.owner_url, own_redis.url)
    with (
        api_server(local, tmp_path, RATE_LIMIT_FAIL_OPEN="false") as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        own_redis.stop()
        response = http.get("/docs/openapi.json")
        assert response.status_code == 503 and response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
