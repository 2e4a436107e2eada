"""Two API instances on one PostgreSQL and one Redis, behind nginx (the e2e `nginx_in_front` helper).

Revocation is shared at once (logout on one, rejected by the other on the next request), and
losing an instance costs clients at most the requests it had in flight: nginx passes new
requests, and in-flight GETs whose answer had not started, to the survivor. (Rate limits shared by both
instances: tests/e2e/test_rate_limits_e2e.py::test_two_instances_behind_nginx_share_one_limit.)
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from auth_service.settings import Settings
from tests.e2e.conftest import api_process, api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.resilience.conftest import Load

LOGIN, REFRESH, LOGOUT, VERIFY = (
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/verify",
)
ALICE = {"username": "alice", "password": DEFAULT_PASSWORD}
GENEROUS = {"RATE_LIMIT_LOGIN": "100000/minute", "RATE_LIMIT_API": "100000/minute", "TRUSTED_PROXIES": "127.0.0.1"}


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def test_logout_on_one_instance_is_honoured_by_the_other_at_once(settings: Settings, tmp_path: Path) -> None:
    await create_user(settings, username="alice")
    with api_server(settings, tmp_path, **GENEROUS) as one, api_server(settings, tmp_path, **GENEROUS) as two:
        async with httpx.AsyncClient(timeout=10) as http:
            first = (await http.post(one + LOGIN, json=ALICE)).json()
            second = (await http.post(two + LOGIN, json=ALICE)).json()
            assert (await http.get(two + VERIFY, headers=bearer(first["access_token"]))).status_code == 200

            assert (await http.post(one + LOGOUT, headers=bearer(first["access_token"]))).status_code == 204
            after_logout = await http.get(two + VERIFY, headers=bearer(first["access_token"]))
            refresh = await http.post(two + REFRESH, json={"refresh_token": first["refresh_token"]})
            other_session = await http.get(one + VERIFY, headers=bearer(second["access_token"]))

            everywhere = await http.post(
                two + LOGOUT, headers=bearer(second["access_token"]), json={"everywhere": True}
            )
            after_everywhere = await http.get(one + VERIFY, headers=bearer(second["access_token"]))

    assert after_logout.status_code == 401 and after_logout.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    assert refresh.status_code == 401 and refresh.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    assert other_session.status_code == 200  # logout ends one session, not the user's others
    assert everywhere.status_code == 204
    assert after_everywhere.status_code == 401 and after_everywhere.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"


async def test_losing_one_instance_behind_nginx_costs_at_most_its_in_flight_requests(
    settings: Settings, tmp_path: Path, nginx_in_front: Any
) -> None:
    await create_user(settings, username="alice")
    with (
        api_process(settings, tmp_path, **GENEROUS) as (one, victim),
        api_server(settings, tmp_path, **GENEROUS) as two,
    ):
        balanced = nginx_in_front([_port(one), _port(two)])
        async with httpx.AsyncClient(base_url=balanced, timeout=15) as http:
            live = (await http.post(LOGIN, json=ALICE)).json()["access_token"]
            load, stop, workers = Load(), asyncio.Event(), 4

            async def step(worker: int) -> None:
                if worker % 2:
                    await load.call("login", http.post(LOGIN, json=ALICE))
                else:
                    await load.call("verify", http.get(VERIFY, headers=bearer(live)))

            runner = asyncio.create_task(load.run(step, workers, stop))
            await asyncio.sleep(2)
            killed_at = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            await asyncio.sleep(3)
            stop.set()
            await runner
            survivor = await http.get(f"{two}/api/v1/health")

    finished_before = [o for o in load.outcomes if o.started + o.elapsed < killed_at]
    assert Load.statuses(finished_before).keys() == {200}, Load.statuses(finished_before)
    failed = [o for o in load.outcomes if o.status != 200]
    # Decided: only requests in flight on the killed instance may fail, never more than the clients.
    # How one fails depends on where the kill lands: before the instance's response header, nginx
    # passes a GET to the survivor and answers 502 to a POST it had already sent (POST is not
    # idempotent); once the header is out (uvicorn writes it before the body), nginx can only cut
    # the client's connection, which the client sees as a transport error (status 0).
    assert len(failed) <= workers, Load.statuses(load.outcomes)
    assert all(o.started < killed_at + 0.5 for o in failed), failed
    assert all(o.status == 0 or (o.status == 502 and o.kind == "login") for o in failed), failed
    after = load.since(killed_at + 0.5)
    assert Load.statuses(after).keys() == {200} and len(after) > 20
    assert survivor.status_code == 200


async def test_an_admins_role_change_or_deactivation_on_one_instance_is_honoured_by_the_other_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    alice = await create_user(settings, username="alice", roles=["user"])
    await create_user(settings, username="root", roles=["admin"])
    with api_server(settings, tmp_path, **GENEROUS) as one, api_server(settings, tmp_path, **GENEROUS) as two:
        async with httpx.AsyncClient(timeout=10) as http:
            admin = bearer((await http.post(one + LOGIN, json={**ALICE, "username": "root"})).json()["access_token"])
            for change in ({"roles": ["user", "support"]}, {"is_active": False}):
                tokens = (await http.post(two + LOGIN, json=ALICE)).json()
                # Warm instance two's view (its answer comes from Redis from now on).
                assert (await http.get(two + VERIFY, headers=bearer(tokens["access_token"]))).status_code == 200
                changed = await http.patch(f"{one}/api/v1/admin/users/{alice.id}", json=change, headers=admin)
                assert changed.status_code == 200, changed.text
                after = await http.get(two + VERIFY, headers=bearer(tokens["access_token"]))
                assert after.status_code == 401 and after.json()["error"]["code"] == "AUTH_TOKEN_REVOKED", change
                refresh = await http.post(two + REFRESH, json={"refresh_token": tokens["refresh_token"]})
                assert refresh.status_code == 401, change
