"""Bad input on every account endpoint: a VALIDATION_ERROR (or LINK_INVALID for link tokens) in
the one envelope, never a 500, and nothing stored changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from auth_service.settings import Settings
from tests.factories import DEFAULT_PASSWORD, bearer
from tests.integration.conftest import login
from tests.integration.users.test_password import _sql

HUGE = "x" * 10_000
CASES = [
    ("POST", "/api/v1/auth/password-reset", b'{"email": 5}', "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset", b"{}", "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset", b'{"email": "a\\u0000@example.com"}', "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset", json.dumps({"email": HUGE}).encode(), "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset", b'{"email": "a@example.com", "admin": true}', "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset/confirm", b'{"token": 5, "new_password": "x"}', "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/password-reset/confirm", b'{"token": "t"}', "VALIDATION_ERROR"),
    (
        "POST",
        "/api/v1/auth/password-reset/confirm",
        json.dumps({"token": HUGE, "new_password": "a new secret here"}).encode(),
        "LINK_INVALID",
    ),
    ("POST", "/api/v1/auth/verify-email", b'{"token": ["x"]}', "VALIDATION_ERROR"),
    ("POST", "/api/v1/auth/verify-email", b'{"token": "a\\u0000b"}', "LINK_INVALID"),
    ("POST", "/api/v1/auth/verify-email", b'{"token": "t", "extra": 1}', "VALIDATION_ERROR"),
    ("PATCH", "/api/v1/users/me", b'{"email": "new@example.com"}', "VALIDATION_ERROR"),
    (
        "PATCH",
        "/api/v1/users/me",
        json.dumps({"email": HUGE, "current_password": DEFAULT_PASSWORD}).encode(),
        "VALIDATION_ERROR",
    ),
    (
        "PATCH",
        "/api/v1/users/me",
        json.dumps({"email": "new@example.com", "current_password": DEFAULT_PASSWORD, "roles": ["admin"]}).encode(),
        "VALIDATION_ERROR",
    ),
    (
        "PATCH",
        "/api/v1/users/me",
        json.dumps({"email": "not an address", "current_password": DEFAULT_PASSWORD}).encode(),
        "VALIDATION_ERROR",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "code"), CASES)
async def test_bad_input_is_refused_in_the_envelope_and_changes_nothing(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, method: str, path: str, body: bytes, code: str
) -> None:
    tokens = await login(client)
    before = await _sql(settings, "SELECT email, password_hash, email_verified FROM users")
    answer = await client.request(
        method, path, content=body, headers={**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    assert await _sql(settings, "SELECT email, password_hash, email_verified FROM users") == before
    assert await _sql(settings, "SELECT count(*) FROM user_tokens") == [(0,)]


# Compatibility forms that NFKC turns into something else: a full-width comma and at sign make a second
# mailbox; U+FDFA (one character) becomes 18, past the column's 255.
TWO_MAILBOXES = "victim@example.com\uff0cattacker\uff20evil.example"
TOO_LONG_ONCE_NORMALISED = "a@" + "\ufdfa" * 20 + ".example"


@pytest.mark.parametrize("address", [TWO_MAILBOXES, TOO_LONG_ONCE_NORMALISED, "victim,attacker@evil.example"])
async def test_an_address_is_checked_as_it_will_be_stored(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, address: str
) -> None:
    """Normalised first, then checked: what is stored is one mailbox that fits its column."""
    tokens = await login(client)
    before = await _sql(settings, "SELECT email, email_key, email_verified FROM users")
    answer = await client.patch(
        "/api/v1/users/me",
        json={"email": address, "current_password": DEFAULT_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
    assert answer.json()["error"]["details"][0]["field"] == "email"
    assert await _sql(settings, "SELECT email, email_key, email_verified FROM users") == before
    assert await _sql(settings, "SELECT count(*) FROM user_tokens") == [(0,)]
