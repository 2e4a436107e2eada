"""The sign counter of passwordless logins: a counter that goes back (a cloned authenticator) is
refused and logged, two answers with one counter let one through, an authenticator that never
counts always signs in, and the backup flag follows the last assertion."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from auth_service.settings import Settings
from tests.authenticator import SoftAuthenticator
from tests.factories import bearer
from tests.integration.auth.test_passkeys import LOGIN, OPTIONS, PASSKEYS, _origin, _passwordless, _register, _rows
from tests.integration.conftest import login


async def test_a_lower_counter_is_refused_and_logged(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator, caplog: Any
) -> None:
    await _register(client, (await login(client))["access_token"], device)
    for _ in range(3):
        assert (await _passwordless(client, device)).status_code == 200
    clone = await _passwordless(client, device, count=2)
    assert clone.status_code == 401 and clone.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    same = await _passwordless(client, device, count=3)  # the same counter again: a replay or a clone
    assert same.status_code == 401
    (stored,) = await _rows(settings, "SELECT sign_count FROM webauthn_credentials")
    assert stored["sign_count"] == 3
    reasons = await _rows(settings, "SELECT failure_reason, user_id FROM login_records WHERE success = false")
    assert [r["failure_reason"] for r in reasons] == ["passkey_cloned", "passkey_cloned"]
    assert all(r["user_id"] == alice.id for r in reasons)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("passkey.cloned_authenticator" in w for w in warnings) == 2
    assert (await _passwordless(client, device)).status_code == 200  # the real one goes on (4)


async def test_of_two_answers_with_one_counter_only_one_signs_in(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    """Two sign-ins racing with one counter value: whichever order their reads and writes take,
    the conditional UPDATE lets exactly one of them through."""
    await _register(client, (await login(client))["access_token"], device)
    for count in range(1, 11):
        bodies = []
        for _ in range(2):
            begun = (await client.post(OPTIONS)).json()
            credential = device.get(begun["public_key"], count=count)
            bodies.append({"ceremony_id": begun["ceremony_id"], "credential": credential})
        answers = await asyncio.gather(*(client.post(LOGIN, json=body) for body in bodies))
        assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
    (stored,) = await _rows(settings, "SELECT sign_count FROM webauthn_credentials")
    assert stored["sign_count"] == 10


async def test_an_authenticator_that_never_counts_always_signs_in(
    client: AsyncTestClient[Any], alice: Any, settings: Settings
) -> None:
    synced = SoftAuthenticator(origin=_origin(settings), counts=False)
    await _register(client, (await login(client))["access_token"], synced)
    for _ in range(3):
        assert (await _passwordless(client, synced)).status_code == 200
    (stored,) = await _rows(settings, "SELECT sign_count FROM webauthn_credentials")
    assert stored["sign_count"] == 0


async def test_backup_flags_follow_the_last_assertion(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    token = (await login(client))["access_token"]
    await _register(client, token, device)
    device.backed_up = False
    assert (await _passwordless(client, device)).status_code == 200
    (item,) = (await client.get(PASSKEYS, headers=bearer(token))).json()
    assert item["backed_up"] is False and item["backup_eligible"] is True and item["last_used_at"] is not None
