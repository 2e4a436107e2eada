"""A passkey as the second factor of a password login (POST /auth/mfa/webauthn/options, then
POST /auth/mfa with `webauthn`), its enforced enrolment, and the passwordless login of a user
who also has TOTP: with a software authenticator against the app."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.lib.crypto.totp import current_step
from tests.authenticator import SoftAuthenticator
from tests.conftest import make_settings
from tests.factories import bearer, create_user
from tests.integration.auth.mfa import MFA, challenge, code_at, enrol, finish
from tests.integration.conftest import login

PASSKEYS = "/api/v1/users/me/passkeys"
OPTIONS = "/api/v1/auth/mfa/webauthn/options"
VERIFY = "/api/v1/auth/verify"


async def _register(client: AsyncTestClient[Any], headers: dict[str, str], device: SoftAuthenticator) -> None:
    options = await client.post(f"{PASSKEYS}/options", headers=headers)
    assert options.status_code == 200, options.text
    created = await client.post(PASSKEYS, json=device.create(options.json()["public_key"]), headers=headers)
    assert created.status_code == 201, created.text


async def _assertion(client: AsyncTestClient[Any], mfa_token: str, device: SoftAuthenticator) -> dict[str, Any]:
    options = await client.post(OPTIONS, json={"mfa_token": mfa_token})
    assert options.status_code == 200, options.text
    body = options.json()
    assert set(body) == {"public_key", "expires_in"} and body["expires_in"] == 120
    return device.get(body["public_key"])


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def test_a_password_then_a_passkey_opens_the_session_with_amr_pwd_hwk_mfa(
    client: AsyncTestClient[Any], alice: Any, device: SoftAuthenticator
) -> None:
    await _register(client, bearer((await login(client))["access_token"]), device)
    mfa = await challenge(client)
    assert mfa["methods"] == ["webauthn"] and mfa["expires_in"] == 300
    options = (await client.post(OPTIONS, json={"mfa_token": mfa["mfa_token"]})).json()["public_key"]
    # The user's own passkeys, named; user verification preferred (the password was the first factor).
    assert [c["id"] for c in options["allowCredentials"]] and options["userVerification"] == "preferred"
    done = await finish(client, mfa["mfa_token"], webauthn=device.get(options))
    assert done.status_code == 200, done.text
    pair = done.json()
    assert _claims(pair["access_token"])["amr"] == ["pwd", "hwk", "mfa"]
    verified = await client.get(VERIFY, headers=bearer(pair["access_token"]))
    assert verified.status_code == 200 and verified.json()["amr"] == ["pwd", "hwk", "mfa"]
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert _claims(refreshed.json()["access_token"])["amr"] == ["pwd", "hwk", "mfa"]
    # The token is spent: no new challenge for it, and the same answer does not finish it again.
    assert (await client.post(OPTIONS, json={"mfa_token": mfa["mfa_token"]})).status_code == 401
    assert (await finish(client, mfa["mfa_token"], webauthn=device.get(options))).status_code == 401


async def test_every_wrong_passkey_answer_is_one_401_and_counts_an_attempt(
    client: AsyncTestClient[Any], alice: Any, settings: Any, device: SoftAuthenticator
) -> None:
    await _register(client, bearer((await login(client))["access_token"]), device)
    await create_user(settings, username="bob")
    other = SoftAuthenticator(origin=settings.mfa.origins[0])
    await _register(client, bearer((await login(client, "bob"))["access_token"]), other)
    mfa = await challenge(client)
    token = mfa["mfa_token"]

    def invalid(response: Any) -> bool:
        return bool(response.status_code == 401 and response.json()["error"]["code"] == "AUTH_MFA_INVALID")

    # No options asked for this token: no challenge to answer.
    stray = device.get({"challenge": "AAAA", "rpId": settings.mfa.rp_id, "allowCredentials": []})
    assert invalid(await finish(client, token, webauthn=stray))
    # Another user's passkey answering this login's challenge.
    assert invalid(
        await finish(
            client,
            token,
            webauthn=other.get((await client.post(OPTIONS, json={"mfa_token": token})).json()["public_key"]),
        )
    )
    # The right passkey from the wrong origin.
    public_key = (await client.post(OPTIONS, json={"mfa_token": token})).json()["public_key"]
    assert invalid(await finish(client, token, webauthn=device.get(public_key, origin="https://evil.example")))
    # A challenge is single use: the answer to an earlier one, replayed.
    public_key = (await client.post(OPTIONS, json={"mfa_token": token})).json()["public_key"]
    answer = device.get(public_key)
    newer = await client.post(OPTIONS, json={"mfa_token": token})  # replaces the challenge answered above
    assert newer.status_code == 200
    assert invalid(await finish(client, token, webauthn=answer))
    # Four wrong answers so far; the fifth attempt is the last the token allows, and a right one.
    done = await finish(client, token, webauthn=await _assertion(client, token, device))
    assert done.status_code == 200, done.text


async def test_options_refuse_unknown_tokens_and_users_without_a_passkey(
    client: AsyncTestClient[Any], alice: Any
) -> None:
    for token in ("mfa_" + "A" * 43, "not-a-token"):
        refused = await client.post(OPTIONS, json={"mfa_token": token})
        assert refused.status_code in (400, 401), refused.text
    assert (await client.post(OPTIONS, json={"mfa_token": "mfa_" + "A" * 43})).json()["error"]["code"] == (
        "AUTH_MFA_INVALID"
    )
    secret, _ = await enrol(client, (await login(client))["access_token"])
    mfa = await challenge(client)
    assert mfa["methods"] == ["totp", "recovery_code"]
    refused = await client.post(OPTIONS, json={"mfa_token": mfa["mfa_token"]})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "AUTH_MFA_INVALID"
    # Exactly one proof: a code and an assertion together are a validation error.
    both = await client.post(MFA, json={"mfa_token": mfa["mfa_token"], "code": "123456", "webauthn": {"id": "x"}})
    assert both.status_code == 400 and both.json()["error"]["code"] == "VALIDATION_ERROR"
    assert (await finish(client, mfa["mfa_token"], code=code_at(secret, current_step()))).status_code == 200


async def test_with_totp_and_a_passkey_either_finishes_and_passwordless_needs_no_second_step(
    client: AsyncTestClient[Any], alice: Any, device: SoftAuthenticator
) -> None:
    access = (await login(client))["access_token"]
    await enrol(client, access)
    await _register(client, bearer(access), device)
    mfa = await challenge(client)
    assert set(mfa["methods"]) == {"totp", "recovery_code", "webauthn"}
    # The passkey alone is the whole login (user verification required): no AUTH_MFA_REQUIRED.
    begun = (await client.post("/api/v1/auth/passkey/options")).json()
    answer = await client.post(
        "/api/v1/auth/passkey",
        json={"ceremony_id": begun["ceremony_id"], "credential": device.get(begun["public_key"])},
    )
    assert answer.status_code == 200, answer.text
    assert _claims(answer.json()["access_token"])["amr"] == ["hwk", "mfa"]


async def test_an_admin_who_must_enrol_can_enrol_a_passkey_and_finish_with_it(
    database_url: str, redis_url: str
) -> None:
    settings = make_settings(database_url, redis_url, mfa_required_roles="admin")
    await create_user(settings, username="root", roles=["admin"])
    device = SoftAuthenticator(origin=settings.mfa.origins[0])
    async with AsyncTestClient(app=create_app(settings)) as client:
        mfa = await challenge(client, "root")
        assert mfa["methods"] == ["enroll"]
        enrolling = bearer(mfa["mfa_token"])
        # The enrolling token opens the passkey registration, and nothing else of /users/me.
        assert (await client.get(PASSKEYS, headers=enrolling)).status_code == 401
        await _register(client, enrolling, device)
        # Registered: the token no longer enrols, and the login finishes with the new passkey.
        assert (await client.post(f"{PASSKEYS}/options", headers=enrolling)).status_code == 401
        done = await finish(client, mfa["mfa_token"], webauthn=await _assertion(client, mfa["mfa_token"], device))
        assert done.status_code == 200, done.text
        admin = bearer(done.json()["access_token"])
        assert (await client.get("/api/v1/admin/users", headers=admin)).status_code == 200
        assert (await challenge(client, "root"))["methods"] == ["webauthn"]
