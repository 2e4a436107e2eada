"""Account mails end to end: a real API process, the arq worker, and an SMTP server (aiosmtpd).
The reset link is read out of the message the SMTP server received, as a person would."""

from __future__ import annotations

import re
import time
from email.message import Message
from pathlib import Path

import httpx

from auth_service.settings import Settings
from tests.conftest import PYTHON
from tests.e2e.conftest import api_server, stop_process
from tests.e2e.test_workers import _spawn, _worker_env
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.smtp import RecordingHandler, body_html, body_text, smtp_server

NEW = "a new secret from the mail"


def _wait_subject(handler: RecordingHandler, subject: str, timeout: float = 60) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in handler.messages:
            if message["Subject"] == subject:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no {subject!r} mail; got {[m['Subject'] for m in handler.messages]}")


async def test_reset_through_the_mail_then_sign_in_with_the_new_password(settings: Settings, tmp_path: Path) -> None:
    await create_user(settings, username="rita")
    with smtp_server() as (handler, smtp_port), api_server(settings, tmp_path, RATE_LIMIT_LOGIN="100/minute") as base:
        worker = _spawn(
            [PYTHON, "-m", "tasks"], _worker_env(settings, smtp_port, PUBLIC_BASE_URL=base), tmp_path / "w.log"
        )
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                old = http.post("/api/v1/auth/login", json={"username": "rita", "password": DEFAULT_PASSWORD}).json()
                asked = http.post("/api/v1/auth/password-reset", json={"email": "rita@example.com"})
                assert asked.status_code == 202
                mail = _wait_subject(handler, "Reset your password")
                assert mail["To"] == "rita@example.com"
                text = body_text(mail)
                link = re.search(r"(http://\S+/reset-password\?token=\S+)", text)
                assert link, text
                assert link.group(1) in body_html(mail)
                # The hosted page shows the form (and changes nothing), its POST sets the password.
                shown = http.get(link.group(1))
                assert shown.status_code == 200 and 'name="new_password"' in shown.text
                token = link.group(1).split("token=", 1)[1]
                done = http.post("/reset-password", data={"token": token, "new_password": NEW})
                assert done.status_code == 200 and "Password changed" in done.text, done.text
                again = http.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW})
                assert again.status_code == 400 and again.json()["error"]["code"] == "LINK_INVALID"
                dead = http.get("/api/v1/auth/verify", headers=bearer(old["access_token"]))
                assert dead.status_code == 401
                assert (
                    http.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}).status_code == 401
                )
                refused = http.post("/api/v1/auth/login", json={"username": "rita", "password": DEFAULT_PASSWORD})
                assert refused.status_code == 401
                fresh = http.post("/api/v1/auth/login", json={"username": "rita", "password": NEW})
                assert fresh.status_code == 200
                changed = _wait_subject(handler, "Your password was changed")
                assert "reset with an e-mailed link" in body_text(changed)
        finally:
            stop_process(worker)
    resets = [m for m in handler.messages if m["Subject"] == "Reset your password"]
    assert len(resets) == 1  # never twice


async def test_a_password_change_mails_its_owner(settings: Settings, tmp_path: Path) -> None:
    await create_user(settings, username="sven")
    with smtp_server() as (handler, smtp_port), api_server(settings, tmp_path) as base:
        worker = _spawn(
            [PYTHON, "-m", "tasks"], _worker_env(settings, smtp_port, PUBLIC_BASE_URL=base), tmp_path / "w.log"
        )
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                pair = http.post("/api/v1/auth/login", json={"username": "sven", "password": DEFAULT_PASSWORD}).json()
                changed = http.post(
                    "/api/v1/users/me/password",
                    json={"current_password": DEFAULT_PASSWORD, "new_password": NEW},
                    headers=bearer(pair["access_token"]),
                )
                assert changed.status_code == 200, changed.text
                mail = _wait_subject(handler, "Your password was changed")
                assert mail["To"] == "sven@example.com" and "was changed at" in body_text(mail)
                assert f"{base}/reset-password" in body_text(mail)
        finally:
            stop_process(worker)


async def test_sign_up_through_the_verification_mail(settings: Settings, tmp_path: Path) -> None:
    """Registration on, a real worker and SMTP: the link in the mail verifies, then login works."""
    await create_user(settings, username="owner")
    with (
        smtp_server() as (handler, smtp_port),
        api_server(settings, tmp_path, REGISTRATION_ENABLED="true") as base,
    ):
        worker = _spawn(
            [PYTHON, "-m", "tasks"], _worker_env(settings, smtp_port, PUBLIC_BASE_URL=base), tmp_path / "w.log"
        )
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                body = {"username": "newcomer", "email": "newcomer@example.com", "password": NEW}
                assert http.post("/api/v1/auth/register", json=body).status_code == 202
                taken = {"username": "someone", "email": "owner@example.com", "password": NEW}
                assert http.post("/api/v1/auth/register", json=taken).status_code == 202
                # The account is written just after the 202 is sent (the answer must not depend on it).
                deadline = time.monotonic() + 10
                while True:
                    refused = http.post("/api/v1/auth/login", json={"username": "newcomer", "password": NEW})
                    if refused.status_code != 401 or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert refused.status_code == 403 and refused.json()["error"]["code"] == "AUTH_EMAIL_UNVERIFIED"
                mail = _wait_subject(handler, "Confirm your e-mail address")
                assert mail["To"] == "newcomer@example.com"
                link = re.search(r"(http://\S+/verify-email\?token=\S+)", body_text(mail))
                assert link, body_text(mail)
                page = http.get(link.group(1))
                assert page.status_code == 200 and "<form" in page.text
                token = link.group(1).split("token=", 1)[1]
                done = http.post("/verify-email", data={"token": token})
                assert done.status_code == 200 and "verified" in done.text.lower(), done.text
                assert (
                    http.post("/api/v1/auth/login", json={"username": "newcomer", "password": NEW}).status_code == 200
                )
                notice = _wait_subject(handler, "Someone tried to sign up with your address")
                assert notice["To"] == "owner@example.com"
        finally:
            stop_process(worker)
