"""Passkeys in a real browser: Debian's Chromium driven by playwright (no browser download), with a
CDP virtual authenticator (CTAP2, internal, resident keys, user verification), against a running
uvicorn of the app, through our /passkeys page: sign in with a password, register a passkey, sign
in with it, replay a lower sign counter (refused), remove it.

Screenshots of the page's states go to a temporary folder, or to docs/img/ with
DOCS_SCREENSHOTS=1 (how the committed ones are made): a normal run rewrites no tracked file.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.settings import Settings
from tests.conftest import ROOT, free_port
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, create_user

LOGIN = "/api/v1/auth/login"

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def _shots(tmp_path: Path) -> Path:
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        return ROOT / "docs" / "img"
    return tmp_path / "screenshots"


async def _status(page: Any, starts: str) -> str:
    locator = page.locator("#status")
    await locator.filter(has_text=re.compile("^" + re.escape(starts))).wait_for(timeout=15_000)
    return str(await locator.text_content())


async def _failure_reasons(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await conn.fetch(
            "SELECT failure_reason FROM login_records WHERE success = false ORDER BY login_timestamp"
        )
    finally:
        await conn.close()
    return [row["failure_reason"] for row in rows]


async def _amr_of_last_login(settings: Settings) -> list[str]:
    """How the newest session was proven, as its tokens say (refresh_tokens.amr)."""
    conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        amr = await conn.fetchval("SELECT amr FROM refresh_tokens ORDER BY issued_at DESC LIMIT 1")
    finally:
        await conn.close()
    return list(amr)


async def test_register_sign_in_refuse_a_clone_and_remove_in_chromium(settings: Settings, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    await create_user(settings, username="alice")
    shots = _shots(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    origin = f"http://localhost:{port}"  # a secure context without TLS, as WebAuthn needs
    env = {"PUBLIC_BASE_URL": origin, "WEBAUTHN_ORIGINS": origin, "RATE_LIMIT_LOGIN": "100/minute"}
    with api_server(settings, tmp_path, port=port, **env):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 760, "height": 720})
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("WebAuthn.enable", {"enableUI": False})
                added = await cdp.send(
                    "WebAuthn.addVirtualAuthenticator",
                    {
                        "options": {
                            "protocol": "ctap2",
                            "transport": "internal",
                            "hasResidentKey": True,
                            "hasUserVerification": True,
                            "isUserVerified": True,
                            "automaticPresenceSimulation": True,
                        }
                    },
                )
                authenticator = added["authenticatorId"]

                await page.goto(f"{origin}/passkeys")
                await page.wait_for_selector("body[data-ready=true]")
                assert await page.locator("#support").is_hidden()  # WebAuthn is usable here
                await page.fill("#username", "alice")
                await page.fill("#password", DEFAULT_PASSWORD)
                await page.click("#password-login")
                assert "alice (password)" in await _status(page, "Signed in")
                await page.locator("#passkeys li", has_text="No passkeys yet").wait_for()
                await page.screenshot(path=str(shots / "passkeys-signed-in.png"), full_page=True)

                # The TOTP enrolment's QR code as Chromium draws the API's inline SVG (pending until
                # confirmed, so it changes nothing of the login below).
                async with httpx.AsyncClient(base_url=origin, timeout=30) as http:
                    pair = (await http.post(LOGIN, json={"username": "alice", "password": DEFAULT_PASSWORD})).json()
                    started = await http.post(
                        "/api/v1/users/me/mfa/totp",
                        json={"current_password": DEFAULT_PASSWORD},
                        headers={"Authorization": f"Bearer {pair['access_token']}"},
                    )
                assert started.status_code == 200, started.text
                qr = await browser.new_page()
                await qr.set_content(f"<body style='margin:24px'>{started.json()['qr_svg']}</body>")
                box = await qr.locator("svg").bounding_box()
                assert box is not None and box["width"] >= 100 and box["width"] == box["height"]
                await qr.screenshot(path=str(shots / "totp-enrolment-qr.png"), full_page=True)
                await qr.close()

                await page.fill("#passkey-name", "Laptop")
                await page.click("#add-passkey")
                await _status(page, "Added the passkey Laptop")
                await page.locator("#passkeys li", has_text="Laptop").wait_for()
                await page.screenshot(path=str(shots / "passkeys-registered.png"), full_page=True)
                (stored,) = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))[
                    "credentials"
                ]
                assert stored["isResidentCredential"] is True and stored["rpId"] == "localhost"

                await page.click("#sign-out")
                await _status(page, "Signed out")
                await page.click("#passkey-login")
                assert "alice (passkey)" in await _status(page, "Signed in")
                assert (await _amr_of_last_login(settings)) == ["hwk", "mfa"]
                await page.locator("#passkeys li", has_text="last used").wait_for()
                await page.screenshot(path=str(shots / "passkeys-passwordless.png"), full_page=True)

                # A clone: the same key with the counter it had one sign-in ago.
                (used,) = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
                assert used["signCount"] > stored["signCount"] >= 0
                await cdp.send(
                    "WebAuthn.removeCredential",
                    {"authenticatorId": authenticator, "credentialId": used["credentialId"]},
                )
                await cdp.send(
                    "WebAuthn.addCredential",
                    {"authenticatorId": authenticator, "credential": {**used, "signCount": used["signCount"] - 1}},
                )
                await page.click("#sign-out")
                await _status(page, "Signed out")
                await page.click("#passkey-login")
                assert "AUTH_INVALID_CREDENTIALS" in await _status(page, "Refused")
                await page.screenshot(path=str(shots / "passkeys-clone-refused.png"), full_page=True)
                assert (await _failure_reasons(settings))[-1] == "passkey_cloned"

                # With a passkey, the password alone no longer opens a session: the page answers
                # AUTH_MFA_REQUIRED with the passkey (POST /auth/mfa, `webauthn`).
                await page.fill("#username", "alice")
                await page.fill("#password", DEFAULT_PASSWORD)
                await page.click("#password-login")
                assert "alice (password and passkey)" in await _status(page, "Signed in")
                await page.screenshot(path=str(shots / "passkeys-second-factor.png"), full_page=True)
                assert (await _amr_of_last_login(settings)) == ["pwd", "hwk", "mfa"]
                await page.click("#passkeys li button.remove")
                await _status(page, "Removed Laptop")
                await page.locator("#passkeys li", has_text="No passkeys yet").wait_for()
                await page.screenshot(path=str(shots / "passkeys-removed.png"), full_page=True)
                # A removed passkey no longer signs in, whatever its counter.
                await page.click("#sign-out")
                await _status(page, "Signed out")
                await page.click("#passkey-login")
                await _status(page, "Refused")
                assert (await _failure_reasons(settings))[-1] == "passkey_unknown"
                # Only the expected refusals (401s) reached the console: no CSP violation, no script error.
                assert all("401" in problem for problem in problems), problems
            finally:
                await browser.close()
    if shots.is_relative_to(tmp_path):
        shutil.rmtree(shots, ignore_errors=True)
