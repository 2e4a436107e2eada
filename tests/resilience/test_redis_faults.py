"""Redis stopped, frozen (SIGSTOP) and restarted empty under load, on a redis-server of our own.

What clients must see: login and refresh answer 503 SERVICE_UNAVAILABLE (never an unchecked
200), verify never calls a revoked token valid (PostgreSQL answers when Redis cannot, and
refills an emptied Redis), and once Redis is back the service recovers by itself with no
wave of errors.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from auth_service.settings import Settings
from tests.conftest import make_settings
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.resilience.conftest import Load, count_rows, envelope_ok, wait_until

LOGIN, REFRESH, LOGOUT, VERIFY = (
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/verify",
)
GENEROUS = {
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_REFRESH": "100000/hour",
    "RATE_LIMIT_API": "100000/minute",
    "REDIS_TIMEOUT": "1",
}
ALICE = {"username": "alice", "password": DEFAULT_PASSWORD}
BOB = {"username": "bob", "password": DEFAULT_PASSWORD}


async def _revoked_token(http: httpx.AsyncClient) -> str:
    """Bob's access token, logged out: no answer may ever call it valid again."""
    pair = (await http.post(LOGIN, json=BOB)).json()
    assert (await http.post(LOGOUT, headers=bearer(pair["access_token"]))).status_code == 204
    return str(pair["access_token"])


def _mixed_traffic(http: httpx.AsyncClient, load: Load, revoked: str, live: str) -> Any:
    """Per worker: log in, verify the new token, rotate its refresh token, verify the revoked one."""
    pairs: dict[int, dict[str, Any]] = {}

    async def step(worker: int) -> None:
        response = await load.call("login", http.post(LOGIN, json=ALICE))
        if response is not None and response.status_code == 200:
            pairs[worker] = response.json()
        if worker in pairs:
            response = await load.call(
                "refresh", http.post(REFRESH, json={"refresh_token": pairs[worker]["refresh_token"]})
            )
            if response is not None and response.status_code == 200:
                pairs[worker] = response.json()
        await load.call("verify_live", http.get(VERIFY, headers=bearer(live)))
        await load.call("verify_revoked", http.get(VERIFY, headers=bearer(revoked)))

    return step


async def test_redis_stopped_under_load_fails_closed_then_recovers_by_itself(
    settings: Settings, tmp_path: Path, own_redis: Any
) -> None:
    await create_user(settings, username="alice")
    await create_user(settings, username="bob")
    local = make_settings(settings.database.owner_url, own_redis.url)
    with api_server(local, tmp_path, **GENEROUS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            revoked = await _revoked_token(http)
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            load, stop = Load(), asyncio.Event()
            runner = asyncio.create_task(load.run(_mixed_traffic(http, load, revoked, live), 3, stop))
            await asyncio.sleep(2)

            await asyncio.to_thread(own_redis.stop)
            down_at = time.monotonic()
            await asyncio.sleep(3)
            down = load.since(down_at)
            # A request while Redis is down, looked at closely: the envelope, and fast.
            probe = await http.post(LOGIN, json=ALICE)
            assert probe.status_code == 503 and envelope_ok(probe, "SERVICE_UNAVAILABLE")

            await asyncio.to_thread(own_redis.start)  # empty: every cached revocation is gone
            up_at = time.monotonic()

            async def login_works() -> bool:
                return (await http.post(LOGIN, json=ALICE)).status_code == 200

            recovery = await wait_until(login_works, timeout=10)
            recovered_at = time.monotonic()
            await asyncio.sleep(3)
            stop.set()
            await runner

    everything = load.outcomes
    assert {o.status for o in everything} <= {200, 401, 503}, Load.statuses(everything)
    # Never an unchecked success while Redis was down.
    assert Load.statuses(down, "login").keys() == {503}
    assert Load.statuses(down, "refresh").keys() <= {503}
    assert {o.code for o in down if o.kind in ("login", "refresh")} == {"SERVICE_UNAVAILABLE"}
    # Revocation held all along: before, during, and after a restart with an empty cache.
    assert Load.statuses(everything, "verify_revoked").keys() == {401}
    assert {o.code for o in everything if o.kind == "verify_revoked"} == {"AUTH_TOKEN_REVOKED"}
    assert Load.statuses(down, "verify_live").keys() == {200}  # fail open, answered by PostgreSQL
    # Recovery is automatic and quick, and clean afterwards.
    assert recovery < 5
    after = load.since(recovered_at + 0.5)
    assert len(after) > 10
    assert Load.statuses(after, "verify_revoked").keys() == {401}
    assert all(o.status == 200 for o in after if o.kind != "verify_revoked"), Load.statuses(after)
    assert up_at - down_at >= 3
    # What PostgreSQL holds: one successful login record per 200 a client saw, none for the 503s.
    seen = sum(1 for o in everything if o.kind == "login" and o.status == 200) + 2  # +2: the setup logins
    seen += 1  # the login that ended the recovery wait
    stored = await count_rows(local.database.owner_url, "SELECT count(*) FROM login_records WHERE success")
    failed = await count_rows(local.database.owner_url, "SELECT count(*) FROM login_records WHERE NOT success")
    assert failed == 0
    assert stored == seen


async def test_redis_frozen_answers_503_within_the_timeout_and_recovers_cleanly(
    settings: Settings, tmp_path: Path, own_redis: Any
) -> None:
    await create_user(settings, username="alice")
    await create_user(settings, username="bob")
    local = make_settings(settings.database.owner_url, own_redis.url)
    with api_server(local, tmp_path, **GENEROUS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            revoked = await _revoked_token(http)
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            own_redis.signal(signal.SIGSTOP)
            try:
                frozen = Load()
                await asyncio.gather(
                    *(frozen.call("login", http.post(LOGIN, json=ALICE)) for _ in range(10)),
                    *(frozen.call("verify_revoked", http.get(VERIFY, headers=bearer(revoked))) for _ in range(5)),
                    *(frozen.call("verify_live", http.get(VERIFY, headers=bearer(live))) for _ in range(5)),
                )
                health = await http.get("/api/v1/health")
            finally:
                own_redis.signal(signal.SIGCONT)
            # Right after the thaw Redis answers the commands it had queued; none may reach the wrong caller.
            load, stop = Load(), asyncio.Event()
            runner = asyncio.create_task(load.run(_mixed_traffic(http, load, revoked, live), 3, stop))
            await asyncio.sleep(4)
            stop.set()
            await runner

    assert Load.statuses(frozen.outcomes, "login") == {503: 10}
    assert {o.code for o in frozen.outcomes if o.kind == "login"} == {"SERVICE_UNAVAILABLE"}
    assert Load.statuses(frozen.outcomes, "verify_revoked") == {401: 5}
    assert Load.statuses(frozen.outcomes, "verify_live") == {200: 5}
    slowest = max(o.elapsed for o in frozen.outcomes)
    assert slowest < 3.0, f"a frozen Redis held a request {slowest:.1f} s (REDIS_TIMEOUT=1)"
    assert health.status_code == 503 and health.json()["checks"]["redis"] == "unavailable"
    assert len(load.outcomes) > 20
    assert Load.statuses(load.outcomes, "verify_revoked").keys() == {401}
    assert all(o.status == 200 for o in load.outcomes if o.kind != "verify_revoked"), Load.statuses(load.outcomes)
