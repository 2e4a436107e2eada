"""PostgreSQL stopped, restarted and crashed under a running API, on a cluster of our own.

What clients must see: 503 SERVICE_UNAVAILABLE in the envelope while the database is down
(never a 500, never a failed login), the pool healing by itself afterwards (connections
left over from before a restart never surface as errors), and what is stored is whole: a
login record with its session and its outbox row, or none of them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from auth_service.settings import Settings
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.resilience.conftest import Load, OwnPostgres, count_rows, envelope_ok, wait_until

LOGIN, VERIFY = "/api/v1/auth/login", "/api/v1/auth/verify"
GENEROUS = {
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "100000/minute",
    "RATE_LIMIT_API": "100000/minute",
}
ALICE = {"username": "alice", "password": DEFAULT_PASSWORD}
WRONG = {"username": "alice", "password": "not the password"}


async def _stored(settings: Settings) -> dict[str, int]:
    url = settings.database.owner_url
    return {
        "success": await count_rows(url, "SELECT count(*) FROM login_records WHERE success"),
        "failure": await count_rows(url, "SELECT count(*) FROM login_records WHERE NOT success"),
        "sessions": await count_rows(url, "SELECT count(DISTINCT family_id) FROM refresh_tokens"),
        "outbox": await count_rows(url, "SELECT count(*) FROM notifications WHERE kind = 'login'"),
    }


async def test_postgres_stopped_under_load_answers_503_and_recovers_by_itself(
    pg_settings: Settings, own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    await create_user(pg_settings, username="alice")
    with api_server(pg_settings, tmp_path, **GENEROUS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            load, stop = Load(), asyncio.Event()

            async def step(worker: int) -> None:
                await load.call("login", http.post(LOGIN, json=ALICE if worker else WRONG))
                await load.call("verify", http.get(VERIFY, headers=bearer(live)))

            runner = asyncio.create_task(load.run(step, 3, stop))
            await asyncio.sleep(2)
            await asyncio.to_thread(own_postgres.stop, "fast")
            down_at = time.monotonic()
            await asyncio.sleep(3)
            down = load.since(down_at)
            probe = await http.post(LOGIN, json=WRONG)
            await asyncio.to_thread(own_postgres.start)

            async def login_works() -> bool:
                return (await http.post(LOGIN, json=ALICE)).status_code == 200

            recovery = await wait_until(login_works, timeout=15)
            recovered_at = time.monotonic()
            await asyncio.sleep(3)
            stop.set()
            await runner

    everything = load.outcomes
    assert {o.status for o in everything} <= {200, 401, 503}, Load.statuses(everything)
    assert Load.statuses(down, "login").keys() == {503}, Load.statuses(down, "login")
    assert {o.code for o in down if o.kind == "login"} == {"SERVICE_UNAVAILABLE"}
    assert probe.status_code == 503 and envelope_ok(probe, "SERVICE_UNAVAILABLE")
    assert probe.headers.get("retry-after")
    assert Load.statuses(down, "verify").keys() == {200}  # Redis knows this user: no database needed
    assert recovery < 10
    after = load.since(recovered_at + 0.5)
    assert len(after) > 10
    assert {(o.kind, o.status) for o in after} <= {("login", 200), ("login", 401), ("verify", 200)}, Load.statuses(
        after
    )
    # Stored: one failure row per 401 a client saw (none for the 503s), and every success whole.
    stored = await _stored(pg_settings)
    seen_failures = sum(1 for o in everything if o.kind == "login" and o.status == 401)
    seen_successes = sum(1 for o in everything if o.kind == "login" and o.status == 200) + 2  # setup + wait
    assert stored["failure"] == seen_failures
    assert stored["success"] == seen_successes
    assert stored["sessions"] == stored["outbox"] == stored["success"]


async def test_restarted_postgres_costs_no_request_an_error(
    pg_settings: Settings, own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    await create_user(pg_settings, username="alice")
    with api_server(pg_settings, tmp_path, **GENEROUS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            # Fill the pool with several connections, then restart the server under them.
            warm = await asyncio.gather(*(http.post(LOGIN, json=ALICE) for _ in range(6)))
            assert {r.status_code for r in warm} == {200}
            await asyncio.to_thread(own_postgres.stop, "fast")
            await asyncio.to_thread(own_postgres.start)
            after = await asyncio.gather(
                *(http.post(LOGIN, json=ALICE) for _ in range(6)),
                *(http.post(LOGIN, json=WRONG) for _ in range(2)),
            )
    assert [r.status_code for r in after] == [200] * 6 + [401] * 2


async def test_login_cut_mid_transaction_leaves_no_partial_write(
    pg_settings: Settings, own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    await create_user(pg_settings, username="alice")
    admin = pg_settings.database.owner_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(admin)
    try:
        # Holds the login's transaction open inside its write of the outbox row (one statement with the
        # session and the login record), so the crash lands mid-write.
        await conn.execute(
            """
            CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
            CREATE TRIGGER stall_outbox AFTER INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION stall();
            """
        )
    finally:
        await conn.close()
    with api_server(pg_settings, tmp_path, DATABASE_STATEMENT_TIMEOUT="60", **GENEROUS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            login = asyncio.create_task(http.post(LOGIN, json=ALICE))

            async def stalled() -> bool:
                return bool(
                    await count_rows(
                        admin,
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%INSERT INTO notifications%' "
                        "AND wait_event = 'PgSleep'",
                    )
                )

            await wait_until(stalled, timeout=10)
            await asyncio.to_thread(own_postgres.stop, "immediate")  # a crash, in the middle of the transaction
            cut: Any = await login
            await asyncio.to_thread(own_postgres.start)
            during = await _stored(pg_settings)
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute("DROP TRIGGER stall_outbox ON notifications")
            finally:
                await conn.close()
            again = await http.post(LOGIN, json=ALICE)

    assert cut.status_code == 503 and envelope_ok(cut, "SERVICE_UNAVAILABLE")
    assert during == {"success": 0, "failure": 0, "sessions": 0, "outbox": 0}
    assert again.status_code == 200  # the pool replaced the connection the crash killed
    assert await _stored(pg_settings) == {"success": 1, "failure": 0, "sessions": 1, "outbox": 1}
