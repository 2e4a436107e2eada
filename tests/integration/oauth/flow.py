"""The OAuth flow as a browser and a client drive it, for the provider's tests: a client
registered by the admin API, the authorization through the real /login form, the exchange."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.settings import Settings
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.conftest import login

ISSUER = "http://auth.test"
REDIRECT = "https://app.example.com/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture
def oidc_settings(database_url: str, redis_url: str) -> Settings:
    # Keys reread every 0.2 s: a retirement made beside the app reaches it as it would in production.
    return make_settings(database_url, redis_url, public_base_url=ISSUER, key_refresh_seconds="0.2")


@pytest.fixture
async def oidc(oidc_settings: Settings) -> AsyncIterator[Any]:
    await create_user(oidc_settings, username="root", roles=["admin"])
    await create_user(oidc_settings, username="alice")
    async with AsyncTestClient(app=create_app(oidc_settings), base_url=ISSUER) as client:
        admin = bearer((await login(client, "root"))["access_token"])
        client.cookies.clear()
        client.follow_redirects = False  # each hop is checked
        yield client, admin


async def register(client: AsyncTestClient[Any], admin: dict[str, str], **spec: Any) -> dict[str, Any]:
    body = {"name": "App", "redirect_uris": [REDIRECT], "first_party": True, **spec}
    response = await client.post("/api/v1/admin/clients", json=body, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def authorize_url(client_id: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email offline_access",
        "state": "st-" + secrets.token_hex(4),
        "nonce": "n-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return "/oauth2/authorize?" + urlencode({k: v for k, v in params.items() if v != ""})


async def sign_in(client: AsyncTestClient[Any], url: str, password: str = DEFAULT_PASSWORD) -> Any:
    """Follow the authorization through the login form; the last response (the redirect to the app)."""
    response = await client.get(url)
    assert response.status_code == 302, response.text
    login_page = await client.get(response.headers["location"])
    assert login_page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', login_page.text)
    return_to = re.search(r'name="return_to" value="([^"]*)"', login_page.text)
    assert csrf and return_to
    form = {
        "username": "alice",
        "password": password,
        "csrf": csrf.group(1),
        "return_to": _unescape(return_to.group(1)),
    }
    posted = await client.post("/login", data=form)
    assert posted.status_code == 303, posted.text
    assert "auth_session" in posted.headers.get("set-cookie", ""), posted.headers
    return await client.get(posted.headers["location"])


def _unescape(text: str) -> str:
    return text.replace("&amp;", "&").replace("&#39;", "'").replace("&quot;", '"').replace("&lt;", "<")


def code_of(response: Any, state: str | None = None) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["iss"] == [ISSUER]  # RFC 9207
    if state is not None:
        assert query["state"] == [state]
    return query["code"][0]


async def exchange(client: AsyncTestClient[Any], app: dict[str, Any], code: str, verifier: str, **extra: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    form |= extra
    auth = (app["client_id"], app["client_secret"]) if app.get("client_secret") else None
    if auth is None:
        form["client_id"] = app["client_id"]
    return await client.post("/oauth2/token", data=form, auth=auth)
