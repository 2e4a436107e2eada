"""Password change (current password given) and reset by e-mailed link, on real PostgreSQL and
Redis through the app: every earlier token dies, links are single-use, and refusals change nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.settings import Settings
from tests.conftest import make_settings, run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login
from tests.security.test_revocation import resources as resources
from tests.security.test_revocation import users_of

CHANGE = "/api/v1/users/me/password"
RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW = "an entirely new secret 42"


async def _sql(settings: Settings, statement: str, **params: Any) -> list[Any]:
    engine = run_engine(settings.database.url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def _alive(client: AsyncTestClient[Any], access: str) -> bool:
    return (await client.get("/api/v1/auth/verify", headers=bearer(access))).status_code == 200


async def test_a_change_returns_a_fresh_pair_and_every_earlier_token_dies(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    here, there = await login(client), await login(client)
    changed = await client.post(
        CHANGE, json={"current_password": DEFAULT_PASSWORD, "new_password": NEW}, headers=bearer(here["access_token"])
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()
    assert set(fresh) >= {"access_token", "refresh_token"}
    assert await _alive(client, fresh["access_token"])
    for old in (here, there):
        assert not await _alive(client, old["access_token"])
        spent = await client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert spent.status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    ).status_code == 200
    wrong = await client.post("/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert wrong.status_code == 401
    await login(client, password=NEW)
    kinds = await _sql(settings, "SELECT payload->>'kind' FROM notifications WHERE kind = 'password_changed'")
    assert kinds == [("password_changed",)]


async def test_a_wrong_current_password_is_invalid_credentials_and_counts_as_a_failed_login(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    tokens = await login(client)
    for _ in range(2):
        refused = await client.post(
            CHANGE,
            json={"current_password": "not my password", "new_password": NEW},
            headers=bearer(tokens["access_token"]),
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    failures = await _sql(
        settings, "SELECT count(*) FROM login_records WHERE username = 'alice' AND failure_reason = 'bad_password'"
    )
    assert failures == [(2,)]  # the same records, and the same per-username budget, as failed logins
    assert await _alive(client, tokens["access_token"])  # nothing changed


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [("short", "too_short"), ("alice is my name", "contains_username"), ("password1234", "too_common")],
)
async def test_a_weak_new_password_names_its_reason_and_changes_nothing(
    client: AsyncTestClient[Any], alice: Any, new_password: str, reason: str
) -> None:
    tokens = await login(client)
    refused = await client.post(
        CHANGE,
        json={"current_password": DEFAULT_PASSWORD, "new_password": new_password},
        headers=bearer(tokens["access_token"]),
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == [{"field": "new_password", "message": error["details"][0]["message"], "reason": reason}]
    assert await _alive(client, tokens["access_token"])
    await login(client)


@pytest.mark.parametrize(
    "body",
    [
        b'{"current_password": 5, "new_password": "an entirely new secret"}',
        b'{"new_password": "an entirely new secret"}',
        b'{"current_password": "x\\u0000", "new_password": "an entirely new secret"}',
        json.dumps({"current_password": DEFAULT_PASSWORD, "new_password": "x" * 10_000}).encode(),
        json.dumps({"current_password": DEFAULT_PASSWORD, "new_password": NEW, "admin": True}).encode(),
    ],
)
async def test_bad_input_to_a_change_is_a_validation_error(
    client: AsyncTestClient[Any], alice: Any, body: bytes
) -> None:
    tokens = await login(client)
    answer = await client.post(
        CHANGE, content=body, headers={**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", answer.text
    assert await _alive(client, tokens["access_token"])


# ------------------------------------------------------------------------------ reset


async def _reset_token(client: AsyncTestClient[Any], settings: Settings, email: str = "alice@example.com") -> str:
    """Ask for a link and rebuild its token from the outbox row, as the worker does."""
    before = await _sql(settings, "SELECT count(*) FROM notifications WHERE kind = 'password_reset'")
    asked = await client.post(RESET, json={"email": email})
    assert asked.status_code == 202 and asked.json() == {"status": "accepted"}
    for _ in range(100):  # the lookup runs after the response
        rows = await _sql(
            settings, "SELECT payload->>'token_id' FROM notifications WHERE kind = 'password_reset' ORDER BY created_at"
        )
        if len(rows) > before[0][0]:
            return Resources(settings).account_links.token(uuid.UUID(rows[-1][0]), "reset")
        await asyncio.sleep(0.05)
    raise AssertionError("no reset mail was queued")


async def test_a_reset_link_sets_the_password_once_and_ends_every_session(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    tokens = await login(client)
    token = await _reset_token(client, settings)
    stored = await _sql(settings, "SELECT token_hash FROM user_tokens")
    assert len(stored) == 1 and token not in str(stored)  # only its hash is kept
    assert token not in str(await _sql(settings, "SELECT payload::text FROM notifications"))
    done = await client.post(CONFIRM, json={"token": token, "new_password": NEW})
    assert done.status_code == 204, done.text
    assert not await _alive(client, tokens["access_token"])
    await login(client, password=NEW)
    again = await client.post(CONFIRM, json={"token": token, "new_password": "yet another new secret"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "LINK_INVALID"
    await login(client, password=NEW)


async def test_unknown_addresses_get_the_same_answer_and_nothing_is_stored(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    unknown = await client.post(RESET, json={"email": "nobody@example.com"})
    known = await client.post(RESET, json={"email": "ALICE@example.com"})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert set(unknown.headers) == set(known.headers)
    await asyncio.sleep(0.3)
    rows = await _sql(settings, "SELECT count(*) FROM user_tokens")
    assert rows == [(1,)]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "x" * 10_000,
        "a\x00b",
        "0" * 32 + "." + "A" * 43,
        # A fresh id each run, under a fixed name: xdist's workers must collect the same test ids.
        pytest.param(uuid.uuid4().hex + "." + "A" * 43, id="unknown-link-id"),
    ],
)
async def test_anything_but_a_live_link_is_link_invalid(client: AsyncTestClient[Any], alice: Any, token: str) -> None:
    answer = await client.post(CONFIRM, json={"token": token, "new_password": NEW})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "LINK_INVALID", answer.text


async def test_expired_and_deactivated_links_are_link_invalid(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    expired = await _reset_token(client, settings)
    await _sql(settings, "UPDATE user_tokens SET expires_at = now() - interval '1 second'")
    answer = await client.post(CONFIRM, json={"token": expired, "new_password": NEW})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "LINK_INVALID"
    live = await _reset_token(client, settings)
    await _sql(settings, "UPDATE users SET is_active = false WHERE username = 'alice'")
    answer = await client.post(CONFIRM, json={"token": live, "new_password": NEW})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "LINK_INVALID"


async def test_a_weak_password_keeps_the_link_usable(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    token = await _reset_token(client, settings)
    weak = await client.post(CONFIRM, json={"token": token, "new_password": "short"})
    assert weak.status_code == 400 and weak.json()["error"]["details"][0]["reason"] == "too_short"
    assert (await client.post(CONFIRM, json={"token": token, "new_password": NEW})).status_code == 204


async def test_twenty_concurrent_confirmations_of_one_link_give_exactly_one_success(
    alice: Any, settings: Settings
) -> None:
    async with AsyncTestClient(app=create_app(settings)) as client:
        token = await _reset_token(client, settings)
        answers = await asyncio.gather(
            *(client.post(CONFIRM, json={"token": token, "new_password": f"{NEW} number {i}"}) for i in range(20))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [204] + [400] * 19, statuses
    winner = next(i for i, answer in enumerate(answers) if answer.status_code == 204)
    async with AsyncTestClient(app=create_app(settings)) as client:
        await login(client, password=f"{NEW} number {winner}")
    used = await _sql(settings, "SELECT used_at FROM user_tokens")
    assert len(used) == 1 and used[0][0] is not None


async def test_reset_mails_are_limited_per_address_known_or_not(database_url: str, redis_url: str) -> None:
    limited = make_settings(database_url, redis_url, rate_limit_email="2/hour")
    await create_user(limited, username="alice")
    async with AsyncTestClient(app=create_app(limited)) as client:
        for email in ("alice@example.com", "nobody@example.com"):
            statuses = [(await client.post(RESET, json={"email": email})).status_code for _ in range(3)]
            assert statuses == [202, 202, 429], (email, statuses)
    await asyncio.sleep(0.3)
    assert await _sql(limited, "SELECT count(*) FROM user_tokens WHERE expires_at > now()") == [(2,)]
    assert dt.datetime.now(dt.UTC)  # (the window is an hour: nothing more to wait for here)


# ------------------------------------------------------------------------------ the length bound

# 1025 bytes: in characters, 1025 ASCII, or 600 two-byte ones (1200 bytes), or far past both.
OVER_1024_BYTES = ["x" * 1025 + "7q", "é" * 600, "a long secret " * 400]


@pytest.mark.parametrize("password", OVER_1024_BYTES, ids=["1027-ascii", "600-two-byte", "5600-ascii"])
async def test_a_new_password_over_1024_bytes_is_too_long_wherever_a_password_is_set(
    database_url: str, redis_url: str, alice: Any, password: str
) -> None:
    """Password change, reset, registration and admin create all refuse it with the policy's
    reason `too_long` (not a bare length error), and store nothing."""
    settings = make_settings(database_url, redis_url, registration_enabled="true")
    await create_user(settings, username="root", roles=["admin"])
    async with AsyncTestClient(app=create_app(settings)) as client:
        user, admin = await login(client), await login(client, "root")
        token = await _reset_token(client, settings)
        before = await _sql(settings, "SELECT username, password_hash FROM users ORDER BY username")
        answers = {
            "new_password": [
                await client.post(
                    CHANGE,
                    json={"current_password": DEFAULT_PASSWORD, "new_password": password},
                    headers=bearer(user["access_token"]),
                ),
                await client.post(CONFIRM, json={"token": token, "new_password": password}),
            ],
            "password": [
                await client.post(
                    "/api/v1/auth/register",
                    json={"username": "newcomer", "email": "newcomer@example.com", "password": password},
                ),
                await client.post(
                    "/api/v1/admin/users",
                    json={"username": "made", "email": "made@example.com", "password": password},
                    headers=bearer(admin["access_token"]),
                ),
            ],
        }
        for field, refused in answers.items():
            for answer in refused:
                assert answer.status_code == 400, answer.text
                error = answer.json()["error"]
                assert error["code"] == "VALIDATION_ERROR"
                assert error["details"] == [
                    {"field": field, "message": error["details"][0]["message"], "reason": "too_long"}
                ]
        assert await _sql(settings, "SELECT username, password_hash FROM users ORDER BY username") == before


async def test_a_completed_reset_ends_the_users_other_reset_links(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    first = await _reset_token(client, settings)
    second = await _reset_token(client, settings)
    assert (await client.post(CONFIRM, json={"token": first, "new_password": NEW})).status_code == 204
    other = await client.post(CONFIRM, json={"token": second, "new_password": "yet another new secret"})
    assert other.status_code == 400 and other.json()["error"]["code"] == "LINK_INVALID"
    await login(client, password=NEW)


async def test_a_password_change_ends_the_users_reset_links(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    token = await _reset_token(client, settings)
    tokens = await login(client)
    changed = await client.post(
        CHANGE, json={"current_password": DEFAULT_PASSWORD, "new_password": NEW}, headers=bearer(tokens["access_token"])
    )
    assert changed.status_code == 200, changed.text
    undone = await client.post(CONFIRM, json={"token": token, "new_password": "yet another new secret"})
    assert undone.status_code == 400 and undone.json()["error"]["code"] == "LINK_INVALID"
    await login(client, password=NEW)


async def test_an_operators_new_password_ends_the_users_reset_links(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, resources: Any
) -> None:
    token = await _reset_token(client, settings)
    async with users_of(resources) as users:
        await users.set_password("alice", NEW)
    undone = await client.post(CONFIRM, json={"token": token, "new_password": "yet another new secret"})
    assert undone.status_code == 400 and undone.json()["error"]["code"] == "LINK_INVALID"
    await login(client, password=NEW)


async def test_a_reset_link_is_valid_only_for_the_address_it_was_sent_to(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    """Whatever moved the account (here a hand-made UPDATE that ends no link), a reset link mailed
    to the old address neither takes the account nor verifies the new address."""
    token = await _reset_token(client, settings)
    sent_to = await _sql(settings, "SELECT payload->'details'->>'to' FROM notifications WHERE kind = 'password_reset'")
    assert sent_to == [("alice@example.com",)]
    await _sql(
        settings,
        "UPDATE users SET email = 'elsewhere@example.com', email_key = 'elsewhere@example.com', email_verified = false",
    )
    taken = await client.post(CONFIRM, json={"token": token, "new_password": NEW})
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "LINK_INVALID"
    assert await _sql(settings, "SELECT email_verified FROM users") == [(False,)]
    await _sql(settings, "UPDATE users SET email = 'alice@example.com', email_key = 'alice@example.com'")
    assert (await client.post(CONFIRM, json={"token": token, "new_password": NEW})).status_code == 204
