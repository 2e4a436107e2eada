"""The caller's own account: /users/me, its sessions (with device data) and its login history."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.settings import Settings
from tests.conftest import run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login


async def _login_as(client: AsyncTestClient[Any], agent: str, username: str = "alice") -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": DEFAULT_PASSWORD},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_me_answers_the_account_with_the_contracts_fields(client: AsyncTestClient[Any], alice: Any) -> None:
    tokens = await login(client)
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert set(body) == {"id", "username", "email", "email_verified", "roles", "created_at", "mfa"}
    assert body["id"] == str(alice.id) and body["username"] == "alice" and body["roles"] == ["user"]
    assert body["email_verified"] is True
    assert body["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    assert (await client.get("/api/v1/users/me")).status_code == 401


async def test_sessions_show_device_data_and_ending_one_ends_exactly_that_one(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    laptop = await _login_as(client, "Laptop/1.0")
    phone = await _login_as(client, "Phone/2.0")
    # A refresh moves the laptop session's last use and keeps its start and device.
    await asyncio.sleep(0.01)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert refreshed.status_code == 200
    laptop = refreshed.json()

    listed = await client.get("/api/v1/users/me/sessions", headers=bearer(phone["access_token"]))
    assert listed.status_code == 200, listed.text
    sessions = {s["user_agent"]: s for s in listed.json()}
    assert set(sessions) == {"Laptop/1.0", "Phone/2.0"}
    assert sessions["Phone/2.0"]["current"] is True and sessions["Laptop/1.0"]["current"] is False
    for session in sessions.values():
        assert set(session) == {"id", "created_at", "last_used_at", "expires_at", "ip_address", "user_agent", "current"}
        assert session["ip_address"]
    assert sessions["Laptop/1.0"]["last_used_at"] > sessions["Laptop/1.0"]["created_at"]

    ended = await client.delete(
        f"/api/v1/users/me/sessions/{sessions['Laptop/1.0']['id']}", headers=bearer(phone["access_token"])
    )
    assert ended.status_code == 204, ended.text
    # The laptop's access and refresh tokens are dead; the phone goes on.
    dead = await client.get("/api/v1/auth/verify", headers=bearer(laptop["access_token"]))
    assert dead.status_code == 401 and dead.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    spent = await client.post("/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert spent.status_code == 401
    assert (await client.get("/api/v1/auth/verify", headers=bearer(phone["access_token"]))).status_code == 200
    left = await client.get("/api/v1/users/me/sessions", headers=bearer(phone["access_token"]))
    assert [s["user_agent"] for s in left.json()] == ["Phone/2.0"]
    # Ending it again, or an unknown id, or garbage: 404, the same answer.
    for unknown in (sessions["Laptop/1.0"]["id"], "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        again = await client.delete(f"/api/v1/users/me/sessions/{unknown}", headers=bearer(phone["access_token"]))
        assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"


async def test_someone_elses_session_is_not_found_and_stays_alive(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    await create_user(settings, username="bob")
    bobs = await _login_as(client, "Bob/1.0", "bob")
    alices = await login(client)
    bob_session = (await client.get("/api/v1/users/me/sessions", headers=bearer(bobs["access_token"]))).json()[0]
    answer = await client.delete(
        f"/api/v1/users/me/sessions/{bob_session['id']}", headers=bearer(alices["access_token"])
    )
    assert answer.status_code == 404
    assert (await client.get("/api/v1/auth/verify", headers=bearer(bobs["access_token"]))).status_code == 200


async def test_login_history_walks_newest_first_by_cursor(client: AsyncTestClient[Any], alice: Any) -> None:
    for _ in range(3):
        bad = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
        assert bad.status_code == 401
    tokens = await login(client)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/api/v1/users/me/logins", params=params, headers=bearer(tokens["access_token"]))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [item["success"] for item in seen] == [True, False, False, False]
    assert seen[1]["failure_reason"] == "bad_password"
    assert [item["at"] for item in seen] == sorted((item["at"] for item in seen), reverse=True)
    assert set(seen[0]) == {"at", "ip_address", "user_agent", "success", "failure_reason"}


async def test_bad_paging_input_is_a_validation_error(client: AsyncTestClient[Any], alice: Any) -> None:
    tokens = await login(client)
    for params in ({"cursor": "garbage"}, {"cursor": "x" * 10_000}, {"limit": "0"}, {"limit": "101"}, {"limit": "a"}):
        page = await client.get("/api/v1/users/me/logins", params=params, headers=bearer(tokens["access_token"]))
        assert page.status_code == 400, (params, page.text)
        assert page.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_a_session_from_before_the_migration_lists_with_its_first_known_time(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    """Rows written before 0004 have no device data: they list, with nulls, not a 500."""
    tokens = await login(client)
    engine = run_engine(settings.database.url)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE refresh_tokens SET ip_address = NULL, user_agent = NULL, session_started_at = NULL")
        )
    await engine.dispose()
    listed = await client.get("/api/v1/users/me/sessions", headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200
    (only,) = listed.json()
    assert only["ip_address"] is None and only["created_at"] == only["last_used_at"]
