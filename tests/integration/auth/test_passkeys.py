"""Passkeys against the app, with a software authenticator: registration, list, rename, remove,
and the passwordless login with every way it must be refused (one 401, never a 500)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from auth_service.settings import Settings
from tests.authenticator import SoftAuthenticator, b64url
from tests.conftest import run_engine
from tests.factories import bearer, create_user
from tests.integration.conftest import login

PASSKEYS = "/api/v1/users/me/passkeys"
OPTIONS = "/api/v1/auth/passkey/options"
LOGIN = "/api/v1/auth/passkey"


def _origin(settings: Settings) -> str:
    return settings.mfa.origins[0]


async def _register(
    client: AsyncTestClient[Any], token: str, device: SoftAuthenticator, name: str | None = None
) -> dict[str, Any]:
    options = await client.post(f"{PASSKEYS}/options", json={"name": name} if name else None, headers=bearer(token))
    assert options.status_code == 200, options.text
    created = await client.post(PASSKEYS, json=device.create(options.json()["public_key"]), headers=bearer(token))
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def _passwordless(client: AsyncTestClient[Any], device: SoftAuthenticator, **lie: Any) -> Any:
    options = await client.post(OPTIONS)
    assert options.status_code == 200, options.text
    begun = options.json()
    return await client.post(
        LOGIN, json={"ceremony_id": begun["ceremony_id"], "credential": device.get(begun["public_key"], **lie)}
    )


async def _rows(settings: Settings, sql: str, **params: Any) -> list[Any]:
    async with run_engine(settings.database.url).connect() as conn:
        return list((await conn.execute(text(sql), params)).mappings())


async def test_registration_options_follow_our_choices(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    token = (await login(client))["access_token"]
    first = await _register(client, token, device, name="Laptop")
    response = await client.post(f"{PASSKEYS}/options", headers=bearer(token))
    assert response.status_code == 200 and response.json()["expires_in"] == 120
    options = response.json()["public_key"]
    assert options["rp"]["id"] == settings.mfa.rp_id and options["attestation"] == "none"
    assert options["user"]["name"] == "alice" and options["user"]["id"] == b64url(alice.id.bytes)
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "required" and selection["userVerification"] == "preferred"
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(device.credential_id)]
    assert first["name"] == "Laptop" and set(first) == {"id", "name", "created_at"}


async def test_register_list_rename_remove(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    token = (await login(client))["access_token"]
    created = await _register(client, token, device)
    assert created["name"] == "Passkey"
    listed = await client.get(PASSKEYS, headers=bearer(token))
    assert listed.status_code == 200
    (item,) = listed.json()
    assert set(item) == {"id", "name", "created_at", "last_used_at", "backup_eligible", "backed_up", "transports"}
    assert item["id"] == created["id"] and item["last_used_at"] is None
    assert (
        item["backup_eligible"] is True and item["backed_up"] is True and item["transports"] == ["internal", "hybrid"]
    )
    renamed = await client.patch(f"{PASSKEYS}/{created['id']}", json={"name": "Phone"}, headers=bearer(token))
    assert renamed.status_code == 200 and renamed.json()["name"] == "Phone"
    removed = await client.delete(f"{PASSKEYS}/{created['id']}", headers=bearer(token))
    assert removed.status_code == 204
    assert (await client.get(PASSKEYS, headers=bearer(token))).json() == []
    # Both changes are audited as the owner, with no key material, and mailed (outbox rows).
    events = await _rows(
        settings, "SELECT action, actor_id, target_id, details::text AS d FROM audit_events ORDER BY at"
    )
    assert [e["action"] for e in events] == ["mfa.passkey.add", "mfa.passkey.remove"]
    assert all(e["actor_id"] == alice.id and e["target_id"] == str(alice.id) for e in events)
    for event in events:
        assert created["id"] in event["d"] and b64url(device.credential_id) not in event["d"]
        assert "public" not in event["d"].lower()
    mails = await _rows(settings, "SELECT kind FROM notifications WHERE job = 'send_account_email' ORDER BY created_at")
    assert [m["kind"] for m in mails] == ["passkey_added", "passkey_removed"]


async def test_passwordless_login_gives_tokens_verify_accepts(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    await _register(client, (await login(client))["access_token"], device)
    options = (await client.post(OPTIONS)).json()
    assert set(options) == {"ceremony_id", "public_key", "expires_in"}
    assert options["public_key"]["allowCredentials"] == [] and options["public_key"]["userVerification"] == "required"
    answer = await client.post(
        LOGIN, json={"ceremony_id": options["ceremony_id"], "credential": device.get(options["public_key"])}
    )
    assert answer.status_code == 200, answer.text
    pair = answer.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    verified = await client.get("/api/v1/auth/verify", headers=bearer(pair["access_token"]))
    assert verified.status_code == 200 and verified.json()["username"] == "alice"
    # The same login record and notification as a password login.
    records = await _rows(settings, "SELECT success, user_id FROM login_records ORDER BY login_timestamp")
    assert records[-1]["success"] is True and records[-1]["user_id"] == alice.id
    logins = await _rows(settings, "SELECT count(*) AS n FROM notifications WHERE kind = 'login'")
    assert logins[0]["n"] == 2
    (stored,) = await _rows(settings, "SELECT sign_count, last_used_at FROM webauthn_credentials")
    assert stored["sign_count"] == 1 and stored["last_used_at"] is not None


async def test_a_ceremony_is_single_use(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    await _register(client, (await login(client))["access_token"], device)
    options = (await client.post(OPTIONS)).json()
    body = {"ceremony_id": options["ceremony_id"], "credential": device.get(options["public_key"])}
    assert (await client.post(LOGIN, json=body)).status_code == 200
    body["credential"] = device.get(options["public_key"])  # a fresh counter, the same ceremony
    again = await client.post(LOGIN, json=body)
    assert again.status_code == 401 and again.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    (record,) = await _rows(settings, "SELECT failure_reason FROM login_records WHERE success = false")
    assert record["failure_reason"] == "passkey_expired"


async def test_an_expired_ceremony_is_refused(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    import redis.asyncio as aioredis

    await _register(client, (await login(client))["access_token"], device)
    options = (await client.post(OPTIONS)).json()
    r = aioredis.Redis.from_url(settings.redis.url)
    keys = [k async for k in r.scan_iter(match=f"*webauthn*{options['ceremony_id']}*")]
    assert len(keys) == 1 and 0 < await r.ttl(keys[0]) <= 120
    await r.delete(*keys)  # what expiry does after 120 s
    await r.aclose()
    answer = await client.post(
        LOGIN, json={"ceremony_id": options["ceremony_id"], "credential": device.get(options["public_key"])}
    )
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"


async def test_wrong_origin_wrong_rp_bad_signature_unknown_credential_are_refused(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    await _register(client, (await login(client))["access_token"], device)
    assert (await _passwordless(client, device, origin="https://evil.example.com")).status_code == 401
    assert (await _passwordless(client, device, rp_id="evil.example.com")).status_code == 401
    stranger = SoftAuthenticator(origin=_origin(settings))
    stranger.user_handle = alice.id.bytes
    assert (await _passwordless(client, stranger)).status_code == 401
    impostor = SoftAuthenticator(origin=_origin(settings), credential_id=device.credential_id)  # another key
    impostor.user_handle = alice.id.bytes
    answer = await _passwordless(client, impostor)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    reasons = await _rows(
        settings, "SELECT failure_reason FROM login_records WHERE success = false ORDER BY login_timestamp"
    )
    assert [r["failure_reason"] for r in reasons] == [
        "passkey_invalid",
        "passkey_invalid",
        "passkey_unknown",
        "passkey_invalid",
    ]
    # The genuine one still works.
    assert (await _passwordless(client, device)).status_code == 200


async def test_an_inactive_user_is_refused_alike(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    await _register(client, (await login(client))["access_token"], device)
    async with run_engine(settings.database.url).begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": alice.id})
    answer = await _passwordless(client, device)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    (record,) = await _rows(settings, "SELECT failure_reason FROM login_records WHERE success = false")
    assert record["failure_reason"] == "passkey_inactive"


async def test_someone_elses_passkey_cannot_be_renamed_or_removed(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    created = await _register(client, (await login(client))["access_token"], device)
    await create_user(settings, username="bob")
    bob = (await login(client, "bob"))["access_token"]
    for response in (
        await client.patch(f"{PASSKEYS}/{created['id']}", json={"name": "Mine"}, headers=bearer(bob)),
        await client.delete(f"{PASSKEYS}/{created['id']}", headers=bearer(bob)),
        await client.delete(f"{PASSKEYS}/not-a-uuid", headers=bearer(bob)),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert (await client.get(PASSKEYS, headers=bearer(bob))).json() == []
    assert len(await _rows(settings, "SELECT id FROM webauthn_credentials")) == 1


async def test_registration_needs_its_pending_options_once(
    client: AsyncTestClient[Any], alice: Any, settings: Settings, device: SoftAuthenticator
) -> None:
    token = (await login(client))["access_token"]
    options = (await client.post(f"{PASSKEYS}/options", headers=bearer(token))).json()["public_key"]
    answer = device.create(options)
    assert (await client.post(PASSKEYS, json=answer, headers=bearer(token))).status_code == 201
    again = await client.post(PASSKEYS, json=answer, headers=bearer(token))
    assert again.status_code == 400 and again.json()["error"]["details"][0]["reason"] == "expired"
    # Another origin's answer does not verify (and spends the options).
    options = (await client.post(f"{PASSKEYS}/options", headers=bearer(token))).json()["public_key"]
    other = SoftAuthenticator(origin="https://evil.example.com")
    refused = await client.post(PASSKEYS, json=other.create(options), headers=bearer(token))
    assert refused.status_code == 400 and refused.json()["error"]["details"][0]["reason"] == "invalid"
    # Another user's pending options are not mine.
    await create_user(settings, username="bob")
    bob = (await login(client, "bob"))["access_token"]
    options = (await client.post(f"{PASSKEYS}/options", headers=bearer(token))).json()["public_key"]
    stolen = await client.post(
        PASSKEYS, json=SoftAuthenticator(origin=_origin(settings)).create(options), headers=bearer(bob)
    )
    assert stolen.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": "x"},
        {"id": "", "rawId": "", "type": "public-key", "response": {}},
        {"id": "a\u0000b", "rawId": "ab", "type": "public-key", "response": {}},
        {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {"clientDataJSON": 5, "attestationObject": []}},
        {
            "id": "YQ",
            "rawId": "YQ",
            "type": "public-key",
            "response": {"clientDataJSON": "!!", "attestationObject": "??"},
        },
        {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {}, "name": "x" * 65},
        {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {}, "name": "a\u0000"},
        [],
        "null",
    ],
)
async def test_bad_registration_input_is_400_never_500(client: AsyncTestClient[Any], alice: Any, body: Any) -> None:
    token = (await login(client))["access_token"]
    await client.post(f"{PASSKEYS}/options", headers=bearer(token))
    response = await client.post(PASSKEYS, json=body, headers=bearer(token))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"ceremony_id": "", "credential": {}}, 400),
        ({"ceremony_id": "a\u0000", "credential": {}}, 400),
        ({"ceremony_id": "x" * 200, "credential": {}}, 400),
        ({"ceremony_id": "abc", "credential": "not an object"}, 400),
        ({"ceremony_id": "abc", "credential": {}}, 401),
        ({"ceremony_id": "abc", "credential": {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {}}}, 401),
        ({"ceremony_id": "abc", "credential": {"response": {"userHandle": 7, "signature": None}}}, 401),
    ],
)
async def test_bad_login_input_is_400_or_401_never_500(
    client: AsyncTestClient[Any], alice: Any, body: Any, status: int
) -> None:
    response = await client.post(LOGIN, json=body)
    assert response.status_code == status, response.text


async def test_a_malformed_assertion_for_a_live_ceremony_is_401(client: AsyncTestClient[Any], alice: Any) -> None:
    options = (await client.post(OPTIONS)).json()
    for credential in ({}, {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {"clientDataJSON": "%%"}}):
        response = await client.post(LOGIN, json={"ceremony_id": options["ceremony_id"], "credential": credential})
        assert response.status_code == 401, response.text
        options = (await client.post(OPTIONS)).json()


async def test_enrolment_needs_a_bearer_token(client: AsyncTestClient[Any]) -> None:
    for response in (
        await client.post(f"{PASSKEYS}/options"),
        await client.get(PASSKEYS),
        await client.post(PASSKEYS, json={}),
        await client.delete(f"{PASSKEYS}/00000000-0000-0000-0000-000000000000"),
    ):
        assert response.status_code == 401 and response.json()["error"]["code"] == "AUTH_TOKEN_INVALID"


async def test_passkey_login_counts_against_the_ips_login_limit(settings: Settings, device: SoftAuthenticator) -> None:
    from auth_service.app import create_app
    from tests.conftest import make_settings

    limited = make_settings(settings.database.url, settings.redis.url, rate_limit_login="3/minute")
    await create_user(limited, username="alice")
    async with AsyncTestClient(app=create_app(limited)) as client:
        await _register(client, (await login(client))["access_token"], device)  # one login slot
        statuses = [(await _passwordless(client, device)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def _value(exposition: str, name: str, **labels: str) -> float:
    want = "".join(f'(?=[^}}]*{k}="{re.escape(v)}")' for k, v in labels.items())
    found = re.findall(rf"^{name}(?:\{{{want}[^}}]*\}})? ([0-9.e+]+)$", exposition, re.MULTILINE)
    return sum(float(v) for v in found)


async def test_passkey_counters_reach_metrics(settings: Settings, device: SoftAuthenticator) -> None:
    from auth_service.app import create_app
    from tests.conftest import make_settings

    token = "operator-token-1234567890"
    metered = make_settings(settings.database.url, settings.redis.url, metrics_token=token)
    await create_user(metered, username="alice")
    async with AsyncTestClient(app=create_app(metered)) as client:
        before = (await client.get("/metrics", headers=bearer(token))).text
        assert re.search(r'^auth_passkey_logins_total\{[^}]*outcome="expired"[^}]*\} ', before, re.MULTILINE)
        await _register(client, (await login(client))["access_token"], device)
        assert (await _passwordless(client, device)).status_code == 200
        assert (await _passwordless(client, device, count=1)).status_code == 401
        after = (await client.get("/metrics", headers=bearer(token))).text
    registrations = "auth_passkey_registrations_total"
    assert _value(after, registrations) - _value(before, registrations) == 1
    for outcome in ("success", "cloned"):
        delta = _value(after, "auth_passkey_logins_total", outcome=outcome)
        assert delta - _value(before, "auth_passkey_logins_total", outcome=outcome) == 1
