"""TOTP enrolment and recovery codes through /users/me/mfa, enforced enrolment (MFA_REQUIRED_ROLES),
the admin reset, and what the audit log, the logs and the mails say about it (real PostgreSQL,
Redis, SMTP and an arq worker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.app import create_app
from auth_service.lib.crypto.totp import current_step
from auth_service.settings import Settings
from db.models import AuditEvent, MfaRecoveryCode, MfaTotp, User
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.auth.mfa import TOTP, challenge, code_at, enrol, finish
from tests.integration.conftest import login
from tests.integration.notifications.test_jobs import run_worker
from tests.smtp import RecordingHandler, body_text, smtp_server


async def _me(client: AsyncTestClient[Any], token: str) -> dict[str, Any]:
    response = await client.get("/api/v1/users/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    mfa: dict[str, Any] = response.json()["mfa"]
    return mfa


async def test_enrolment_is_pending_until_confirmed_and_shows_an_svg_qr(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    token = (await login(client))["access_token"]
    started = await client.post(TOTP, json={"current_password": DEFAULT_PASSWORD}, headers=bearer(token))
    assert started.status_code == 200, started.text
    body = started.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].endswith("</svg>")
    assert body["otpauth_uri"].startswith("otpauth://totp/") and "alice" in body["otpauth_uri"]
    row = (await db_session.execute(select(MfaTotp).where(MfaTotp.user_id == alice.id))).scalar_one()
    assert row.confirmed_at is None
    assert body["secret"].encode() not in row.secret_ciphertext  # encrypted at rest
    assert await _me(client, token) == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    assert (await login(client))["access_token"]  # pending: the login still needs no code


async def test_a_wrong_password_or_confirm_code_is_refused(client: AsyncTestClient[Any], alice: User) -> None:
    token = (await login(client))["access_token"]
    wrong = await client.post(TOTP, json={"current_password": "not it at all"}, headers=bearer(token))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
    started = await client.post(TOTP, json={"current_password": DEFAULT_PASSWORD}, headers=bearer(token))
    secret = started.json()["secret"]
    bad = await client.post(
        f"{TOTP}/confirm", json={"code": code_at(secret, current_step() + 3)}, headers=bearer(token)
    )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "AUTH_MFA_INVALID"


async def test_confirm_gives_ten_codes_and_disabling_with_a_code_or_the_password_works(
    client: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    token = (await login(client))["access_token"]
    secret, codes = await enrol(client, token)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert await _me(client, token) == {"totp": True, "passkeys": 0, "recovery_codes_left": 10}
    stored = (await db_session.execute(select(MfaRecoveryCode.code_hash))).scalars().all()
    assert not {c.replace("-", "") for c in codes} & set(stored)  # only hashes
    gone = await client.request("DELETE", TOTP, json={"code": code_at(secret, current_step())}, headers=bearer(token))
    assert gone.status_code == 204, gone.text
    assert await _me(client, token) == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    await enrol(client, token)
    by_password = await client.request(
        "DELETE", TOTP, json={"current_password": DEFAULT_PASSWORD}, headers=bearer(token)
    )
    assert by_password.status_code == 204, by_password.text
    both = await client.request(
        "DELETE", TOTP, json={"current_password": DEFAULT_PASSWORD, "code": "123456"}, headers=bearer(token)
    )
    assert both.status_code == 400
    actions = (await db_session.execute(select(AuditEvent.action).order_by(AuditEvent.at))).scalars().all()
    assert actions == ["mfa.totp.enable", "mfa.totp.disable", "mfa.totp.enable", "mfa.totp.disable"]


async def test_enforced_enrolment_for_an_admin_end_to_end(
    database_url: str, redis_url: str, db_session: AsyncSession
) -> None:
    settings = make_settings(database_url, redis_url, mfa_required_roles="admin")
    await create_user(settings, username="root", roles=["admin"])
    async with AsyncTestClient(app=create_app(settings)) as client:
        mfa = await challenge(client, "root")
        assert mfa["methods"] == ["enroll"]
        enrolling = bearer(mfa["mfa_token"])
        # Only the enrolment endpoints take it.
        assert (await client.get("/api/v1/users/me", headers=enrolling)).status_code == 401
        assert (await client.get("/api/v1/admin/users", headers=enrolling)).status_code == 401
        started = await client.post(TOTP, headers=enrolling)  # no password: the login proved it
        assert started.status_code == 200, started.text
        secret = started.json()["secret"]
        wrong = await client.post(f"{TOTP}/confirm", json={"code": "000000"}, headers=enrolling)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "AUTH_MFA_INVALID"
        confirmed = await client.post(
            f"{TOTP}/confirm", json={"code": code_at(secret, current_step())}, headers=enrolling
        )
        assert confirmed.status_code == 200, confirmed.text
        # A confirmed enrolment: the token no longer opens the enrolment endpoints.
        assert (await client.post(TOTP, headers=enrolling)).status_code == 401
        reused = await finish(client, mfa["mfa_token"], code=code_at(secret, current_step()))
        assert reused.status_code == 401  # the confirm's code is spent: a fresh one finishes the login
        done = await finish(client, mfa["mfa_token"], code=code_at(secret, current_step() + 1))
        assert done.status_code == 200, done.text
        admin_token = done.json()["access_token"]
        assert (await client.get("/api/v1/admin/users", headers=bearer(admin_token))).status_code == 200
        assert (await challenge(client, "root"))["methods"] == ["totp", "recovery_code"]


async def test_admin_reset_removes_factors_ends_sessions_and_is_audited(
    client: AsyncTestClient[Any], settings: Settings, alice: User, db_session: AsyncSession
) -> None:
    await create_user(settings, username="root", roles=["admin"])
    admin_token = (await login(client, "root"))["access_token"]
    alice_token = (await login(client))["access_token"]
    await enrol(client, alice_token)
    reset = await client.delete(f"/api/v1/admin/users/{alice.id}/mfa", headers=bearer(admin_token))
    assert reset.status_code == 204, reset.text
    assert (await client.get("/api/v1/users/me", headers=bearer(alice_token))).status_code == 401
    fresh = (await login(client))["access_token"]  # no factor left: the password alone signs in
    assert await _me(client, fresh) == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    event = (await db_session.execute(select(AuditEvent).where(AuditEvent.action == "user.mfa_reset"))).scalar_one()
    assert event.target_id == str(alice.id) and event.details["factors_removed"] == 2


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server() as server:
        yield server


async def test_the_last_codes_mail_arrives_and_nothing_secret_is_logged_or_audited(
    database_url: str,
    redis_url: str,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(
        database_url,
        redis_url,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=str(smtp[1]),
        smtp_starttls="false",
        public_base_url="https://auth.example.com",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        secret, codes = await enrol(client, (await login(client))["access_token"])
        for code in codes[:8]:
            mfa = await challenge(client)
            assert (await finish(client, mfa["mfa_token"], recovery_code=code)).status_code == 200
    await run_worker(settings)
    subjects = [m["Subject"] for m in smtp[0].wait_for(2 + 8 + 8)]
    assert "Two-step sign-in was turned on" in subjects
    assert "A recovery code was used: 2 left" in subjects
    low = next(m for m in smtp[0].messages if m["Subject"] == "A recovery code was used: 2 left")
    assert "Only 2 recovery codes left" in body_text(low)
    out = capfd.readouterr()
    logged = out.out + out.err
    rows = (await db_session.execute(select(AuditEvent.details))).scalars().all()
    for needle in [secret, *codes, *(c.replace("-", "") for c in codes)]:
        assert needle not in logged
        assert all(needle not in str(details) for details in rows)
    assert "mfa.recovery.use" in {a for (a,) in (await db_session.execute(select(AuditEvent.action))).all()}
