"""Helpers of the second-factor tests: enrolment through the API, codes of a given step, a peer
IP chosen per request, and the login's challenge."""

from __future__ import annotations

from typing import Any

import pyotp
from litestar.testing import AsyncTestClient

from auth_service.lib.crypto.totp import current_step
from tests.factories import DEFAULT_PASSWORD, bearer

LOGIN = "/api/v1/auth/login"
MFA = "/api/v1/auth/mfa"
TOTP = "/api/v1/users/me/mfa/totp"
PEER_HEADER = "x-test-peer"


class PeerFromHeader:
    """The app behind a socket peer the test names (`x-test-peer`), as if the client connected
    from that address: the IP binding of an mfa_token is tested with real requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == PEER_HEADER.encode():
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


async def password_login(client: AsyncTestClient[Any], username: str = "alice", **headers: str) -> Any:
    return await client.post(LOGIN, json={"username": username, "password": DEFAULT_PASSWORD}, headers=headers)


async def challenge(client: AsyncTestClient[Any], username: str = "alice", **headers: str) -> dict[str, Any]:
    """Log in with the password and return `error.mfa` of the AUTH_MFA_REQUIRED answer."""
    response = await password_login(client, username, **headers)
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "AUTH_MFA_REQUIRED"
    mfa: dict[str, Any] = error["mfa"]
    return mfa


async def enrol(client: AsyncTestClient[Any], access_token: str) -> tuple[str, list[str]]:
    """Enable TOTP for the token's user (confirmed with the previous step's code, so the current
    and the next step stay usable) and return (secret, recovery codes)."""
    started = await client.post(TOTP, json={"current_password": DEFAULT_PASSWORD}, headers=bearer(access_token))
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = await client.post(
        f"{TOTP}/confirm", json={"code": code_at(secret, current_step() - 1)}, headers=bearer(access_token)
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    return secret, codes


async def finish(client: AsyncTestClient[Any], mfa_token: str, peer: str | None = None, **proof: Any) -> Any:
    """POST /auth/mfa with the token and the proof (from `peer` when given)."""
    headers = {PEER_HEADER: peer} if peer else {}
    return await client.post(MFA, json={"mfa_token": mfa_token, **proof}, headers=headers)
