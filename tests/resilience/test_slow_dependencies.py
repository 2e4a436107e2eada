"""Slow and frozen dependencies, through a TCP proxy in front of the shared PostgreSQL and Redis
(only the proxy stalls; the servers themselves keep serving everyone else).

Latency below the timeouts slows answers but fails none; a frozen dependency turns into a
quick 503 (DATABASE_POOL_TIMEOUT, DATABASE_CONNECT_TIMEOUT, DATABASE_STATEMENT_TIMEOUT,
REDIS_TIMEOUT) instead of requests piling up, and the service recovers when it thaws.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import text

from auth_service.container import Resources
from auth_service.lib.crypto.account_links import token_hash
from auth_service.settings import Settings
from tests.conftest import make_settings, run_engine
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.resilience.conftest import Load, TcpProxy, envelope_ok, wait_until

LOGIN, VERIFY = "/api/v1/auth/login", "/api/v1/auth/verify"
ALICE = {"username": "alice", "password": DEFAULT_PASSWORD}
FAST_FAIL = {
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_API": "100000/minute",
    "DATABASE_POOL_SIZE": "2",
    "DATABASE_MAX_OVERFLOW": "1",
    "DATABASE_POOL_TIMEOUT": "1",
    "DATABASE_CONNECT_TIMEOUT": "1",
    "DATABASE_STATEMENT_TIMEOUT": "1.5",
    "REDIS_TIMEOUT": "1",
}
DEADLINE = 3.5  # worst cases: a pooled connection's probe (1.5 s), or a wait for one (1 s) then a connect (1 s)


def _via(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def _proxied(settings: Settings, tcp_proxy: Callable[[int], TcpProxy]) -> tuple[Settings, TcpProxy, TcpProxy]:
    pg = tcp_proxy(urlsplit(settings.database.owner_url).port or 5432)
    rd = tcp_proxy(urlsplit(settings.redis.url).port or 6379)
    return make_settings(_via(settings.database.owner_url, pg), _via(settings.redis.url, rd)), pg, rd


async def _burst(http: httpx.AsyncClient, live: str, logins: int = 8, verifies: int = 4) -> Load:
    load = Load()
    await asyncio.gather(
        *(load.call("login", http.post(LOGIN, json=ALICE)) for _ in range(logins)),
        *(load.call("verify", http.get(VERIFY, headers=bearer(live))) for _ in range(verifies)),
    )
    return load


async def test_latency_below_the_timeouts_slows_answers_but_fails_none(
    settings: Settings, tmp_path: Path, tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    await create_user(settings, username="alice")
    local, pg, rd = _proxied(settings, tcp_proxy)
    # The default timeouts and pool: latency well below them must cost time, never an error.
    with api_server(local, tmp_path, RATE_LIMIT_LOGIN="100000/minute", RATE_LIMIT_API="100000/minute") as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            pg.delay = rd.delay = 0.1  # per chunk each way: a login makes several round trips to each
            slow = await _burst(http, live, logins=4, verifies=4)
    assert Load.statuses(slow.outcomes) == {200: 8}
    assert max(o.elapsed for o in slow.outcomes) > 0.3  # the latency was real


async def test_frozen_postgres_answers_503_within_the_timeouts_then_recovers(
    settings: Settings, tmp_path: Path, tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    await create_user(settings, username="alice")
    local, pg, _ = _proxied(settings, tcp_proxy)
    with api_server(local, tmp_path, **FAST_FAIL) as base:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            await _burst(http, live)  # the pool holds warm connections when the database freezes
            pg.stall()
            started = time.monotonic()
            frozen = await _burst(http, live, logins=12)
            burst_took = time.monotonic() - started
            probe = await http.post(LOGIN, json=ALICE)
            pg.resume()

            async def login_works() -> bool:
                return (await http.post(LOGIN, json=ALICE)).status_code == 200

            await wait_until(login_works, timeout=10)
            after = await _burst(http, live)

    logins = [o for o in frozen.outcomes if o.kind == "login"]
    assert Load.statuses(logins) == {503: 12}
    assert {o.code for o in logins} == {"SERVICE_UNAVAILABLE"}
    assert probe.status_code == 503 and envelope_ok(probe, "SERVICE_UNAVAILABLE")
    slowest = max(o.elapsed for o in logins)
    assert slowest < DEADLINE, f"a login waited {slowest:.1f} s on a frozen database"
    assert burst_took < DEADLINE + 1  # 12 logins on a pool of 3: they did not queue one after another
    assert Load.statuses(frozen.outcomes, "verify") == {200: 4}  # Redis alone answers verify
    assert Load.statuses(after.outcomes) == {200: 12}


async def test_frozen_redis_answers_503_within_the_timeout_then_recovers(
    settings: Settings, tmp_path: Path, tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    await create_user(settings, username="alice")
    local, _, rd = _proxied(settings, tcp_proxy)
    with api_server(local, tmp_path, **FAST_FAIL) as base:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            rd.stall()
            frozen = await _burst(http, live, logins=12, verifies=6)
            rd.resume()

            async def login_works() -> bool:
                return (await http.post(LOGIN, json=ALICE)).status_code == 200

            await wait_until(login_works, timeout=10)
            after = await _burst(http, live)

    assert Load.statuses(frozen.outcomes, "login") == {503: 12}
    assert Load.statuses(frozen.outcomes, "verify") == {200: 6}  # fail open; revocation from PostgreSQL
    slowest = max(o.elapsed for o in frozen.outcomes)
    assert slowest < DEADLINE, f"a request waited {slowest:.1f} s on a frozen Redis"
    assert Load.statuses(after.outcomes) == {200: 12}


# ---- a full hashing pool -----------------------------------------------------------------------

ADMIN_USERS, REGISTER, CHANGE = "/api/v1/admin/users", "/api/v1/auth/register", "/api/v1/users/me/password"
RESET_CONFIRM = "/api/v1/auth/password-reset/confirm"
# One hash in flight at a time: the second of two overlapping hashes is refused at once.
ONE_HASH = {
    "PASSWORD_HASH_WORKERS": "1",
    "PASSWORD_HASH_QUEUE": "1",
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_API": "100000/minute",
}


async def test_a_full_hashing_pool_is_a_503_with_retry_after_on_every_endpoint_that_hashes(
    settings: Settings, tmp_path: Path
) -> None:
    """Eight requests that each hash a new password, all at once, on a pool of one: those the
    pool refuses answer 503 SERVICE_UNAVAILABLE with Retry-After, never 500, on admin create,
    registration, reset confirmation and password change alike (login had it already). Looped
    per endpoint until a round really saw the pool full."""
    await create_user(settings, username="root", roles=["admin"])
    for i in range(8):
        await create_user(settings, username=f"changer{i}")
    # Live reset links as the worker would mail them (bound to the address), ten rounds of eight,
    # each for a user of its own: a completed reset ends the user's other links.
    first = await create_user(settings, username="resetter0")
    resetters = [first] + [
        await create_user(settings, username=f"resetter{n}", password_hash=first.password_hash) for n in range(1, 80)
    ]
    links = Resources(settings).account_links
    resets: list[str] = []
    engine = run_engine(settings.database.url)
    async with engine.begin() as conn:
        for user in resetters:
            token_id = uuid.uuid4()
            resets.append(links.token(token_id, "reset"))
            await conn.execute(
                text(
                    "INSERT INTO user_tokens (id, purpose, token_hash, user_id, email, expires_at) "
                    "VALUES (:id, 'reset', :hash, :user, :email, now() + interval '10 minutes')"
                ),
                {"id": token_id, "hash": token_hash(resets[-1]), "user": user.id, "email": user.email},
            )
    await engine.dispose()
    unused_resets = iter(resets)
    with api_server(settings, tmp_path, REGISTRATION_ENABLED="true", **ONE_HASH) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            admin = (await http.post(LOGIN, json={"username": "root", "password": DEFAULT_PASSWORD})).json()
            changers = [
                (await http.post(LOGIN, json={"username": f"changer{i}", "password": DEFAULT_PASSWORD})).json()
                for i in range(8)
            ]
            serial = iter(range(10_000))

            def admin_create(_: int) -> httpx.Request:
                n = next(serial)
                body = {"username": f"made{n}", "email": f"made{n}@example.com", "password": f"fresh secret {n:05d}"}
                return http.build_request("POST", ADMIN_USERS, json=body, headers=bearer(admin["access_token"]))

            def register(_: int) -> httpx.Request:
                n = next(serial)
                body = {"username": f"signup{n}", "email": f"signup{n}@example.com", "password": f"own secret {n:05d}"}
                return http.build_request("POST", REGISTER, json=body)

            def change(i: int) -> httpx.Request:
                body = {"current_password": DEFAULT_PASSWORD, "new_password": f"changed secret {next(serial):05d}"}
                return http.build_request("POST", CHANGE, json=body, headers=bearer(changers[i]["access_token"]))

            def reset(_: int) -> httpx.Request:
                body = {"token": next(unused_resets), "new_password": f"reset secret {next(serial):05d}"}
                return http.build_request("POST", RESET_CONFIRM, json=body)

            async def until_busy(name: str, build: Callable[[int], httpx.Request], ok: int) -> None:
                busy: list[httpx.Response] = []
                for _ in range(10):
                    answers = await asyncio.gather(*(http.send(build(i)) for i in range(8)))
                    assert {a.status_code for a in answers} <= {ok, 503}, (name, [a.text for a in answers])
                    busy = [a for a in answers if a.status_code == 503]
                    if busy:
                        break
                assert busy, f"{name}: the pool was never full"
                assert all(envelope_ok(a, "SERVICE_UNAVAILABLE") and a.headers["retry-after"] == "1" for a in busy)

            await until_busy("admin create", admin_create, 201)
            await until_busy("register", register, 202)
            # A password change hashes twice (the current password's check, then the new hash):
            # once, all at once, is enough to fill the pool at either step.
            answers = await asyncio.gather(*(http.send(change(i)) for i in range(8)))
            assert {a.status_code for a in answers} <= {200, 503}, [a.text for a in answers]
            assert any(a.status_code == 503 for a in answers)
            await until_busy("reset confirm", reset, 204)
