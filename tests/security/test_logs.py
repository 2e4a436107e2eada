"""What reaches the logs, read from a real uvicorn's output (tests/e2e api_server writes
api-<port>.log): a broad mix of requests, hostile input included, then the log is checked for
secrets and for forged or broken lines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth_service.settings import Settings
from tests.conftest import TEST_SECRET
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.security.harness import GENEROUS_LIMITS, hardened_settings

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
VERIFY = "/api/v1/auth/verify"
SECOND_PASSWORD = "second user's passphrase 7vQ!"
WRONG_PASSWORDS = ["wrong-password-canary-1", 'hunter2-canary\n{"level":"info"}', "pässwörd-canary-ü"]
FORGED_EVENT = "admin login"
HOSTILE_USERNAMES = [
    'mallory\n{"level":"info","event":"admin login","username":"admin"}',
    'mallory\r\n{"level":"info","event":"admin login"}',
    '\n{"level":"info","event":"admin login"}',
    "eve\x1b[2J\x1b[31mred\x1b[0m",
    'eve\u2028{"event":"admin login"}\u2029',
    "unknown-canary-username-6d1f",
]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return hardened_settings(database_url, redis_url)


def _drive(base: str) -> dict[str, list[str]]:
    """A broad mix of traffic; returns every secret the log must not contain."""
    secrets: dict[str, list[str]] = {"passwords": [DEFAULT_PASSWORD, SECOND_PASSWORD, *WRONG_PASSWORDS], "tokens": []}
    with httpx.Client(base_url=base, timeout=30) as client:

        def log_in(username: str, password: str) -> dict[str, Any]:
            response = client.post(LOGIN, json={"username": username, "password": password})
            assert response.status_code == 200, response.text
            pair: dict[str, Any] = response.json()
            secrets["tokens"] += [pair["access_token"], pair["refresh_token"], pair["refresh_token"].split(".")[-1]]
            return pair

        alice = log_in("alice", DEFAULT_PASSWORD)
        bob = log_in("bob", SECOND_PASSWORD)
        for password in WRONG_PASSWORDS:
            assert client.post(LOGIN, json={"username": "alice", "password": password}).status_code == 401
        for username in HOSTILE_USERNAMES:
            response = client.post(LOGIN, json={"username": username, "password": WRONG_PASSWORDS[0]})
            assert response.status_code in (400, 401), response.text
        # Refresh (rotation), reuse of the spent token (theft), verify, logout.
        rotated = client.post(REFRESH, json={"refresh_token": alice["refresh_token"]})
        assert rotated.status_code == 200
        secrets["tokens"] += [rotated.json()["access_token"], rotated.json()["refresh_token"]]
        auth = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
        assert client.get(VERIFY, headers=auth).status_code == 200
        assert client.get(VERIFY, params={"access_token": bob["access_token"]}).status_code == 401
        assert client.post(LOGOUT, headers=auth).status_code == 204
        assert client.get(VERIFY, headers=auth).status_code == 401
        assert (
            client.post(
                LOGOUT,
                headers={"Authorization": f"Bearer {bob['access_token']}"},
                json={"refresh_token": bob["refresh_token"], "everywhere": True},
            ).status_code
            == 204
        )
        # Bad and tampered tokens, odd headers.
        tampered = alice["access_token"][:-4] + "AAAA"
        secrets["tokens"].append(tampered)
        for header in (f"Bearer {tampered}", "Bearer not.a.jwt", "Basic YWxpY2U6cGFzcw==", f"bearer {'x' * 5000}"):
            assert client.get(VERIFY, headers={"Authorization": header}).status_code == 401
        assert client.post(REFRESH, json={"refresh_token": "forged.refresh-token-canary"}).status_code == 401
        secrets["tokens"].append("forged.refresh-token-canary")
        assert (
            client.get("/api/v1/health", headers={"X-Request-ID": 'fake\\n{"event":"admin login"}'}).status_code == 200
        )
        # (A raw ESC in a header never reaches the app: uvicorn refuses the request line itself.)
        assert (
            client.post(
                LOGIN, json={"username": "alice", "password": "x"}, headers={"User-Agent": "ua\t<script>"}
            ).status_code
            == 401
        )
        assert client.post(LOGIN, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        assert client.get("/nothing/here").status_code == 404
    return secrets


def test_logs_hold_no_secrets_and_no_forged_lines(settings: Settings, tmp_path: Path) -> None:
    asyncio.run(create_user(settings, username="alice"))
    asyncio.run(create_user(settings, username="bob", password=SECOND_PASSWORD))
    limits = {name.upper(): value for name, value in GENEROUS_LIMITS.items() if name != "rate_limit_public"}
    with api_server(settings, tmp_path, **limits) as base:
        secrets = _drive(base)
        port = base.rsplit(":", 1)[1]
    raw = (tmp_path / f"api-{port}.log").read_bytes()
    text = raw.decode("utf-8")

    # One JSON object per line: injected newlines, CRs, U+2028 and escapes stayed inside strings.
    lines = text.splitlines()
    assert len(lines) > 20, text[:2000]
    records = []
    for number, line in enumerate(lines, 1):
        record = json.loads(line)
        assert isinstance(record, dict), f"line {number}: {line[:200]}"
        assert {"event", "level", "timestamp"} <= set(record), f"line {number}: {line[:200]}"
        records.append(record)
    assert len(raw.split(b"\n")) == len(lines) + 1  # no bare CR or other line break splits a record
    assert not [r for r in records if r["event"] == FORGED_EVENT], "a forged log line got through"
    assert b"\x1b" not in raw, "a raw ANSI escape reached the log"
    assert "\u2028" not in text and "\u2029" not in text

    # No password, token or key, in any form.
    for password in secrets["passwords"]:
        assert password not in text, f"password {password!r} in the log"
        assert json.dumps(password)[1:-1] not in text, f"password {password!r} (JSON-escaped) in the log"
    for token in secrets["tokens"]:
        assert token not in text, "a token is in the log"
    assert TEST_SECRET not in text, "the JWT secret is in the log"
    # Usernames are masked: the full unknown name never appears.
    assert "unknown-canary-username-6d1f" not in text

    # The traffic really was logged (a silent logger would pass everything above).
    events = {r["event"] for r in records}
    assert {"login.succeeded", "login.failed"} <= events, sorted(events)
    assert all("request_id" in r for r in records if r["event"].startswith("login."))
