"""Self-registration, e-mail verification and e-mail change, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.settings import Settings
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login
from tests.integration.users.test_password import CONFIRM, _reset_token, _sql

REGISTER = "/api/v1/auth/register"
VERIFY = "/api/v1/auth/verify-email"
PASSWORD = "a fresh sign-up secret"


@pytest.fixture
def open_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, registration_enabled="true")


@pytest.fixture
async def open_client(open_settings: Settings) -> Any:
    async with AsyncTestClient(app=create_app(open_settings)) as client:
        yield client


async def _verify_token(settings: Settings, user: str) -> str:
    rows = await _sql(
        settings,
        "SELECT t.id FROM user_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.username = :user AND t.purpose = 'verify' ORDER BY t.created_at DESC",
        user=user,
    )
    assert rows, "no verification link was written"
    return Resources(settings).account_links.token(uuid.UUID(str(rows[0][0])), "verify")


async def test_registration_is_off_unless_enabled(client: AsyncTestClient[Any]) -> None:
    answer = await client.post(REGISTER, json={"username": "newbie", "email": "n@example.com", "password": PASSWORD})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


async def test_sign_up_verify_then_sign_in(open_client: AsyncTestClient[Any], open_settings: Settings) -> None:
    answer = await open_client.post(
        REGISTER, json={"username": "newbie", "email": "newbie@example.com", "password": PASSWORD}
    )
    assert answer.status_code == 202 and answer.json() == {"status": "verification_sent"}, answer.text
    # Unverified: a wrong password is the usual 401, the right one 403 AUTH_EMAIL_UNVERIFIED.
    wrong = await open_client.post("/api/v1/auth/login", json={"username": "newbie", "password": "not it at all"})
    assert wrong.status_code == 401
    unverified = await open_client.post("/api/v1/auth/login", json={"username": "newbie", "password": PASSWORD})
    assert unverified.status_code == 403 and unverified.json()["error"]["code"] == "AUTH_EMAIL_UNVERIFIED"
    token = await _verify_token(open_settings, "newbie")
    assert (await open_client.post(VERIFY, json={"token": token})).status_code == 204
    again = await open_client.post(VERIFY, json={"token": token})
    assert again.status_code == 400 and again.json()["error"]["code"] == "LINK_INVALID"
    tokens = await login(open_client, "newbie", PASSWORD)
    me = (await open_client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))).json()
    assert me["email_verified"] is True and me["roles"] == []


async def test_a_taken_username_is_409_and_a_taken_address_answers_like_a_new_one(
    open_client: AsyncTestClient[Any], open_settings: Settings
) -> None:
    await create_user(open_settings, username="alice")
    taken = await open_client.post(
        REGISTER, json={"username": "ALICE", "email": "other@example.com", "password": PASSWORD}
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "CONFLICT"
    fresh = await open_client.post(
        REGISTER, json={"username": "bobby", "email": "bobby@example.com", "password": PASSWORD}
    )
    dup = await open_client.post(
        REGISTER, json={"username": "carla", "email": "Alice@example.com", "password": PASSWORD}
    )
    assert fresh.status_code == dup.status_code == 202 and fresh.json() == dup.json()
    # carla's account exists as bobby's does (the name is reserved either way), but holds no
    # address of its own: alice's stays alice's, and carla gets no verification link.
    carla = await _sql(
        open_settings, "SELECT email_verified, position('@' in email_key) > 0 FROM users WHERE username = 'carla'"
    )
    assert carla == [(False, False)]
    links = "SELECT count(*) FROM user_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'carla'"
    assert await _sql(open_settings, links) == [(0,)]
    kinds = await _sql(open_settings, "SELECT kind FROM notifications ORDER BY created_at")
    assert ("signup_attempt",) in kinds and ("verify_email",) in kinds


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": 5, "email": "x@example.com", "password": "a fresh sign-up secret"}',
        b'{"email": "x@example.com", "password": "a fresh sign-up secret"}',
        b'{"username": "a\\u0000b", "email": "x@example.com", "password": "a fresh sign-up secret"}',
        json.dumps({"username": "x" * 10_000, "email": "x@example.com", "password": PASSWORD}).encode(),
        json.dumps({"username": "xavier", "email": "x@example.com", "password": PASSWORD, "roles": ["admin"]}).encode(),
        json.dumps({"username": "xavier", "email": "not-an-address", "password": PASSWORD}).encode(),
        json.dumps({"username": "xavier", "email": "x@example.com", "password": "short"}).encode(),
    ],
)
async def test_bad_sign_ups_are_validation_errors_and_store_nothing(
    open_client: AsyncTestClient[Any], open_settings: Settings, body: bytes
) -> None:
    answer = await open_client.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", answer.text
    assert await _sql(open_settings, "SELECT count(*) FROM users") == [(0,)]


async def test_an_email_change_is_unverified_until_its_link_and_the_old_address_is_told(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    tokens = await login(client)
    changed = await client.patch(
        "/api/v1/users/me",
        json={"email": "alice.new@example.com", "current_password": DEFAULT_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "alice.new@example.com" and changed.json()["email_verified"] is False
    notices = await _sql(settings, "SELECT payload->'details'->>'to' FROM notifications WHERE kind = 'email_changed'")
    assert notices == [("alice@example.com",)]
    token = await _verify_token(settings, "alice")
    assert (await client.post(VERIFY, json={"token": token})).status_code == 204
    me = (await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))).json()
    assert me["email_verified"] is True


async def test_an_old_verification_link_never_verifies_a_newer_address(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    tokens = await login(client)
    headers = bearer(tokens["access_token"])
    body = {"current_password": DEFAULT_PASSWORD}
    await client.patch("/api/v1/users/me", json={**body, "email": "first@example.com"}, headers=headers)
    first = await _verify_token(settings, "alice")
    await asyncio.sleep(0.01)
    await client.patch("/api/v1/users/me", json={**body, "email": "second@example.com"}, headers=headers)
    stale = await client.post(VERIFY, json={"token": first})
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "LINK_INVALID"


async def test_an_email_change_needs_the_password_and_a_free_address(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    await create_user(settings, username="bob")
    tokens = await login(client)
    headers = bearer(tokens["access_token"])
    wrong = await client.patch(
        "/api/v1/users/me", json={"email": "x@example.com", "current_password": "not my password"}, headers=headers
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    taken = await client.patch(
        "/api/v1/users/me", json={"email": "BOB@example.com", "current_password": DEFAULT_PASSWORD}, headers=headers
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "CONFLICT"
    assert await _sql(settings, "SELECT email FROM users WHERE username = 'alice'") == [("alice@example.com",)]


async def test_resending_a_verification_link(client: AsyncTestClient[Any], alice: Any, settings: Settings) -> None:
    tokens = await login(client)
    headers = bearer(tokens["access_token"])
    verified = await client.post("/api/v1/users/me/verify-email", headers=headers)
    assert verified.status_code == 202  # nothing to verify: still 202, no mail
    assert await _sql(settings, "SELECT count(*) FROM user_tokens") == [(0,)]
    await _sql(settings, "UPDATE users SET email_verified = false")
    assert (await client.post("/api/v1/users/me/verify-email", headers=headers)).status_code == 202
    assert await _sql(settings, "SELECT count(*) FROM user_tokens WHERE purpose = 'verify'") == [(1,)]


async def test_two_sign_ups_with_one_username_at_once_are_one_account_and_one_409(
    open_settings: Settings, tmp_path: Any
) -> None:
    """Fired together at a real server (the in-process client runs one request at a time) until
    they overlapped ten times: the username is reserved before the 202, so the second is 409 and
    no account is dropped after a 202."""
    import time

    import httpx

    from tests.e2e.conftest import api_server

    env = {"REGISTRATION_ENABLED": "true", "RATE_LIMIT_EMAIL": "100000/hour", "RATE_LIMIT_EMAIL_IP": "100000/hour"}
    overlaps = trials = 0
    with api_server(open_settings, tmp_path, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def sign_up(name: str, address: str) -> tuple[int, float, float]:
                started = time.perf_counter()
                answer = await http.post(REGISTER, json={"username": name, "email": address, "password": PASSWORD})
                return answer.status_code, started, time.perf_counter()

            while overlaps < 10 and trials < 60:
                trials += 1
                name = f"twin{trials}"
                (a, a0, a1), (b, b0, b1) = await asyncio.gather(
                    sign_up(name, f"{name}.a@example.com"), sign_up(name, f"{name}.b@example.com")
                )
                if not (a0 < b1 and b0 < a1):
                    continue
                overlaps += 1
                assert sorted([a, b]) == [202, 409], (name, a, b)
            await asyncio.sleep(0.5)  # the last 202's account is written just after its answer
    assert overlaps >= 10, f"only {overlaps} overlapping trials in {trials}"
    counts = await _sql(open_settings, "SELECT count(*), count(DISTINCT username_key) FROM users")
    assert counts == [(trials, trials)]


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.com\uff0cattacker\uff20evil.example",  # NFKC: "victim@example.com,attacker@evil.example"
        "a@" + "\ufdfa" * 20 + ".example",  # NFKC: 18 characters each, past the column
    ],
)
async def test_a_sign_up_address_is_checked_as_it_will_be_stored(
    open_client: AsyncTestClient[Any], open_settings: Settings, address: str
) -> None:
    answer = await open_client.post(REGISTER, json={"username": "mallory", "email": address, "password": PASSWORD})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", answer.text
    assert await _sql(open_settings, "SELECT count(*) FROM users") == [(0,)]


async def test_an_email_change_ends_a_reset_link_mailed_to_the_old_address(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    """The link must not take the account, nor mark the never-opened new address verified."""
    reset = await _reset_token(client, settings)
    tokens = await login(client)
    changed = await client.patch(
        "/api/v1/users/me",
        json={"email": "alice.new@example.com", "current_password": DEFAULT_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    taken = await client.post(CONFIRM, json={"token": reset, "new_password": "an entirely new secret 42"})
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "LINK_INVALID"
    me = (await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))).json()
    assert me["email"] == "alice.new@example.com" and me["email_verified"] is False
    still = await client.post("/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert still.json()["error"]["code"] == "AUTH_EMAIL_UNVERIFIED"  # the owner's password is still the right one
    live = await _sql(settings, "SELECT purpose FROM user_tokens WHERE used_at IS NULL")
    assert live == [("verify",)]  # only the new address's link


async def test_an_unclaimed_sign_up_that_changes_its_address_tells_nobody_at_the_address_it_never_owned(
    database_url: str, redis_url: str, alice: Any
) -> None:
    """A sign-up with alice's address holds no address of its own; when it moves to one of its
    own, alice (whose address it only showed) gets no "your address changed" mail."""
    settings = make_settings(
        database_url, redis_url, registration_enabled="true", registration_require_verified_email="false"
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        signed = await client.post(
            REGISTER, json={"username": "mallory", "email": "alice@example.com", "password": PASSWORD}
        )
        assert signed.status_code == 202
        await asyncio.sleep(0.3)  # the address step runs after the answer
        tokens = await login(client, "mallory", PASSWORD)
        moved = await client.patch(
            "/api/v1/users/me",
            json={"email": "mallory@example.com", "current_password": PASSWORD},
            headers=bearer(tokens["access_token"]),
        )
        assert moved.status_code == 200, moved.text
    notices = await _sql(settings, "SELECT payload::text FROM notifications WHERE kind = 'email_changed'")
    assert notices == []
    assert await _sql(settings, "SELECT count(*) FROM user_tokens WHERE purpose = 'verify' AND used_at IS NULL") == [
        (1,)
    ]
