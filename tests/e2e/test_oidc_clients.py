"""The OpenID Connect provider against client libraries we did not write, over HTTP to real
uvicorn processes (DESIGN.md, "Keys, JWKS and OpenID Connect": "Proof that counts").

- npm's openid-client (panva, v6; tests/e2e/oidc/js/rp.mjs): discovery, the code flow with PKCE
  S256 through the /login form, the ID token checked against the JWKS, userinfo, refresh,
  introspection, revocation and RP-initiated logout; then `keys rotate --now` by the CLI and the
  whole run again, now signed with the new key.
- authlib's client (its OpenID Connect app mixins over its httpx AsyncOAuth2Client): the same
  flow for a third-party client (the consent page), the ID token validated by authlib
  (joserfc and CodeIDToken), userinfo, refresh, revocation, logout; a public client on the
  same browser session (PKCE alone, single sign-on); and client_credentials.
- A resource server that knows only the JWKS URL verifies our ES256 access tokens; two API
  instances on one database pick up a rotation and a retirement by themselves within
  KEY_REFRESH_SECONDS, without a restart.

Every transcript goes to the test's tmp dir (openid-client-*.json, with the API logs).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client import BaseApp, FrameworkIntegration
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin

with warnings.catch_warnings():
    # authlib 1.9 warns that it prefers the httpx2 fork when it falls back to httpx, ours.
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from auth_service.container import Resources
from auth_service.lib.audit import CLI
from auth_service.settings import Settings
from tests.conftest import PYTHON, TEST_SECRET, free_port
from tests.e2e.conftest import api_server, api_servers, child_env
from tests.e2e.oidc.browser import sign_in
from tests.e2e.oidc.node import openid_client_modules, require_node, run_relying_party
from tests.e2e.oidc.resource_server import JwksResourceServer, TokenRefused
from tests.factories import DEFAULT_PASSWORD, bearer, create_user

# Loopback redirect URIs (allowed over http): the provider redirects there, nobody listens; each
# client captures the Location header instead.
REDIRECT = "http://127.0.0.1/rp/callback"
SIGNED_OUT = "http://127.0.0.1/rp/signed-out"
SCOPE = "openid profile email offline_access"
LOGIN = "/api/v1/auth/login"
VERIFY = "/api/v1/auth/verify"


@pytest.fixture(scope="session")
def openid_client() -> tuple[str, Path]:
    """`node` and the node_modules holding the locked openid-client (cached per machine)."""
    node, npm = require_node()
    return node, openid_client_modules(npm)


def _cli_env(settings: Settings) -> dict[str, str]:
    """The CLI beside the test's API processes: same database, Redis and secret (the secret
    derives the key that wraps the signing keys' private halves)."""
    return child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY=TEST_SECRET)


async def _rotate_now(settings: Settings) -> str:
    """What `just keys rotate --now` does (tests/integration/oauth/test_keys_cli.py runs the
    command itself; here, in process, a process start cheaper): the new key's kid."""
    operator = Resources(settings, pool_size=1)
    try:
        return (await operator.keyring.rotate(CLI, now_too=True)).kid
    finally:
        await operator.close()


async def _retire(settings: Settings, kid: str) -> None:
    """What `just keys retire KID` does, in process."""
    operator = Resources(settings, pool_size=1)
    try:
        await operator.keyring.retire(kid, CLI)
    finally:
        await operator.close()


async def _kids(base: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{base}/.well-known/jwks.json")
    assert answer.status_code == 200, answer.text
    return [key["kid"] for key in answer.json()["keys"]]


async def poll(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until `check()` holds, polled every 50 ms; fails after `timeout` seconds."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _kid_of(token: str) -> str:
    segment = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["kid"])


def _redirect_of(response: httpx.Response) -> httpx.URL:
    assert response.status_code == 302, response.text
    return httpx.URL(response.headers["location"])


async def _register(http: httpx.AsyncClient, admin: dict[str, str], **spec: Any) -> dict[str, Any]:
    answer = await http.post("/api/v1/admin/clients", json=spec, headers=admin)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def _login(http: httpx.AsyncClient, base: str, username: str) -> dict[str, Any]:
    answer = await http.post(f"{base}{LOGIN}", json={"username": username, "password": DEFAULT_PASSWORD})
    assert answer.status_code == 200, answer.text
    pair: dict[str, Any] = answer.json()
    return pair


# ---- npm openid-client ----------------------------------------------------------------------


def _check_openid_client_run(run: dict[str, Any], issuer: str, client_id: str) -> None:
    steps = {step["step"]: step for step in run["steps"]}
    assert list(steps) == [
        "discovery",
        "authorize",
        "login form",
        "login",
        "authorize (signed in)",
        "token (authorization_code)",
        "userinfo",
        "token (refresh_token)",
        "introspection (access token)",
        "introspection (refresh token)",
        "revocation",
        "introspection (refresh token, revoked)",
        "introspection (access token of the revoked session)",
        "end session",
        "authorize (prompt=none, after logout)",
    ], run["steps"]
    discovery = steps["discovery"]
    assert discovery["issuer"] == issuer and discovery["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256"]
    assert steps["authorize"]["status"] == 302 and steps["authorize"]["location"] == "/login"
    assert steps["authorize"]["return_to"] == "/oauth2/authorize"
    assert steps["login form"]["status"] == 200 and steps["login form"]["csrf_cookie"] is True
    assert steps["login"]["status"] == 303 and steps["login"]["session_cookie"] is True
    back = steps["authorize (signed in)"]
    assert back["status"] == 302 and back["redirect"] == REDIRECT
    assert back["state_matches"] is True and back["iss"] == issuer  # RFC 9207
    token = steps["token (authorization_code)"]
    assert token["token_type"] == "bearer" and token["scope"] == SCOPE  # the library lower-cases the type
    assert token["expires_in"] > 0 and token["refresh_token"] is not None
    assert run["id_token_kid"] in token["jwks_kids"]  # the signature was checked against our JWKS
    id_token = token["id_token"]
    assert id_token["header"]["alg"] == "ES256" and id_token["header"]["kid"] == run["id_token_kid"]
    assert id_token["iss"] == issuer and id_token["aud"] == client_id and id_token["nonce_matches"] is True
    assert id_token["at_hash"] is True and id_token["auth_time"] is True and id_token["amr"] == ["pwd"]
    assert id_token["preferred_username"] == "olivia" and id_token["email"] == "olivia@example.com"
    userinfo = steps["userinfo"]
    assert userinfo["sub_matches"] is True and userinfo["email_verified"] is True
    assert userinfo["preferred_username"] == "olivia" and userinfo["email"] == "olivia@example.com"
    refreshed = steps["token (refresh_token)"]
    assert refreshed["rotated"] is True and refreshed["new_access_token"] is True and refreshed["scope"] == SCOPE
    access = steps["introspection (access token)"]
    assert access["active"] is True and access["client_id_matches"] is True and access["sub_matches"] is True
    assert access["token_type"] == "Bearer" and access["scope"] == SCOPE
    refresh = steps["introspection (refresh token)"]
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token" and refresh["sub_matches"] is True
    # RFC 7009 ends the session: its refresh token and its access tokens with it.
    assert steps["introspection (refresh token, revoked)"]["active"] is False
    assert steps["introspection (access token of the revoked session)"]["active"] is False
    logout = steps["end session"]
    assert logout["status"] == 302 and logout["redirect"] == SIGNED_OUT and logout["state_matches"] is True
    assert logout["session_cookie"] is False  # the sign-in cookie cleared
    silent = steps["authorize (prompt=none, after logout)"]
    assert silent["status"] == 302 and silent["redirect"] == REDIRECT
    assert silent["error"] == "login_required" and silent["library_error"] == "AuthorizationResponseError"


async def test_openid_client_completes_the_flow_and_again_after_a_key_rotation(
    settings: Settings, tmp_path: Path, openid_client: tuple[str, Path]
) -> None:
    node, modules = openid_client
    await create_user(settings, username="olivia")
    env = _cli_env(settings)
    # The integrator's recipe (`just create-client`), run while the API starts: both take seconds.
    registering = subprocess.Popen(
        [PYTHON, "-m", "auth_service", "create-client", "openid-client RP", "--redirect-uri", REDIRECT,
         "--post-logout-redirect-uri", SIGNED_OUT, "--first-party"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    try:
        with api_server(
            settings,
            tmp_path,
            port=port,
            PUBLIC_BASE_URL=issuer,
            KEY_REFRESH_SECONDS="1",
            RATE_LIMIT_LOGIN="100/minute",
        ):
            out, err = registering.communicate(timeout=120)
            assert registering.returncode == 0, err
            app = json.loads(out)
            assert app["type"] == "confidential" and app["first_party"] is True and app["client_secret"]
            config = {
                "issuer": issuer,
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
                "redirect_uri": REDIRECT,
                "post_logout_redirect_uri": SIGNED_OUT,
                "username": "olivia",
                "password": DEFAULT_PASSWORD,
            }
            (first_kid,) = await _kids(issuer)
            first = run_relying_party(node, modules, config, tmp_path / "openid-client-1.json")
            assert first["library"] == "openid-client@6.9.1"
            _check_openid_client_run(first, issuer, app["client_id"])
            assert first["id_token_kid"] == first_kid

            new_kid = await _rotate_now(settings)
            assert new_kid != first_kid
            # The API rereads the keys every KEY_REFRESH_SECONDS: published means it signs with it.
            await poll("the API loads the new key", lambda: _has_kid(issuer, new_kid), timeout=10)
            second = run_relying_party(node, modules, config, tmp_path / "openid-client-2.json")
            _check_openid_client_run(second, issuer, app["client_id"])
            assert second["id_token_kid"] == new_kid
    finally:
        if registering.poll() is None:
            registering.kill()
            registering.wait()
    assert app["client_secret"][:12] not in (tmp_path / "openid-client-1.json").read_text()


async def _has_kid(base: str, kid: str) -> bool:
    return kid in await _kids(base)


# ---- authlib --------------------------------------------------------------------------------


class AuthlibRelyingParty(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):  # type: ignore[misc]
    """authlib's OpenID Connect client app (what its Starlette integration is) without a web
    framework: discovery, the authorization URL with PKCE and nonce, the token request, the ID
    token validated against the JWKS, userinfo, the end-session URL."""

    client_cls = AsyncOAuth2Client

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FrameworkIntegration("auth-service"), name="auth-service", **kwargs)


async def test_authlib_completes_the_code_flow_with_consent_and_client_credentials(
    settings: Settings, tmp_path: Path
) -> None:
    await create_user(settings, username="root", roles=["admin"])
    await create_user(settings, username="paula")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with api_server(settings, tmp_path, port=port, PUBLIC_BASE_URL=issuer, RATE_LIMIT_LOGIN="100/minute"):
        async with httpx.AsyncClient(base_url=issuer, timeout=30) as http:
            admin = bearer((await _login(http, issuer, "root"))["access_token"])
            web = await _register(
                http, admin, name="Reports (a third party)", redirect_uris=[REDIRECT],
                post_logout_redirect_uris=[SIGNED_OUT], first_party=False,
            )  # fmt: skip
            machine = await _register(
                http, admin, name="Nightly export", grant_types=["client_credentials"], scopes=["reports:read"]
            )
            native = await _register(
                http, admin, name="Desktop app", redirect_uris=[REDIRECT], type="public", first_party=True
            )
        metadata_url = f"{issuer}/.well-known/openid-configuration"
        rp = AuthlibRelyingParty(
            client_id=web["client_id"],
            client_secret=web["client_secret"],
            server_metadata_url=metadata_url,
            client_kwargs={
                "scope": SCOPE,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_post",
                "timeout": 30,
            },
        )
        started = await rp.create_authorization_url(redirect_uri=REDIRECT)
        assert "code_challenge_method=S256" in started["url"] and started["nonce"] and started["code_verifier"]
        async with httpx.AsyncClient(base_url=issuer, timeout=30) as browser:
            callback = await sign_in(browser, started["url"], "paula", DEFAULT_PASSWORD, consent=True)
            assert callback.copy_with(query=None) == REDIRECT
            assert callback.params["iss"] == issuer  # RFC 9207 (authlib does not check it)

            token = await rp.fetch_access_token(
                redirect_uri=REDIRECT,
                authorization_response=str(callback),
                state=started["state"],  # authlib refuses a callback whose state differs
                code_verifier=started["code_verifier"],
            )
            assert token["token_type"] == "Bearer" and token["scope"] == SCOPE and token["refresh_token"]
            claims = await rp.parse_id_token(
                token,
                nonce=started["nonce"],
                claims_options={
                    "iss": {"essential": True, "value": issuer},
                    "aud": {"essential": True, "value": web["client_id"]},
                    "sub": {"essential": True},
                },
            )  # signature (JWKS, ES256), iss, aud, exp, iat, nonce, azp, at_hash
            assert claims["preferred_username"] == "paula" and claims["amr"] == ["pwd"] and claims["at_hash"]
            info = await rp.userinfo(token=token)
            assert info["sub"] == claims["sub"] and info["email"] == "paula@example.com"

            metadata = await rp.load_server_metadata()
            async with AsyncOAuth2Client(
                web["client_id"], web["client_secret"], token_endpoint_auth_method="client_secret_post",
                token=token, timeout=30,
            ) as session:  # fmt: skip
                refreshed = await session.refresh_token(metadata["token_endpoint"])
                assert refreshed["refresh_token"] != token["refresh_token"] and refreshed["scope"] == SCOPE
                live = await session.introspect_token(
                    metadata["introspection_endpoint"], token=refreshed["access_token"]
                )
                assert live.status_code == 200 and live.json()["active"] is True
                assert live.json()["client_id"] == web["client_id"] and live.json()["sub"] == claims["sub"]
                revoked = await session.revoke_token(
                    metadata["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token"
                )
                assert revoked.status_code == 200
                with pytest.raises(OAuthError) as refused:
                    await session.refresh_token(metadata["token_endpoint"], refresh_token=refreshed["refresh_token"])
                assert refused.value.error == "invalid_grant"
                dead = await session.introspect_token(
                    metadata["introspection_endpoint"], token=refreshed["access_token"]
                )
                assert dead.json() == {"active": False}

            # A public client (no secret: PKCE alone, token_endpoint_auth_method none), first-party:
            # the browser is signed in already, so the authorization answers with a code at once.
            public = AuthlibRelyingParty(
                client_id=native["client_id"],
                server_metadata_url=metadata_url,
                client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "token_endpoint_auth_method": "none"},
            )
            again = await public.create_authorization_url(redirect_uri=REDIRECT)
            single_sign_on = _redirect_of(await browser.get(again["url"]))
            native_token = await public.fetch_access_token(
                redirect_uri=REDIRECT,
                authorization_response=str(single_sign_on),
                state=again["state"],
                code_verifier=again["code_verifier"],
            )
            native_claims = await public.parse_id_token(native_token, nonce=again["nonce"])
            assert native_claims["sub"] == claims["sub"] and native_claims["aud"] == native["client_id"]
            async with AsyncOAuth2Client(
                native["client_id"], token_endpoint_auth_method="none", token=native_token, timeout=30
            ) as app:
                assert (await app.refresh_token(metadata["token_endpoint"]))["access_token"]

            logout = await rp.create_logout_url(post_logout_redirect_uri=SIGNED_OUT, id_token_hint=token["id_token"])
            ended = await browser.get(logout["url"])
            assert ended.status_code == 302, ended.text
            assert ended.headers["location"] == f"{SIGNED_OUT}?state={logout['state']}"
            assert "auth_session" not in browser.cookies

        # client_credentials: a confidential client on its own behalf (no user, no refresh token).
        async with AsyncOAuth2Client(
            machine["client_id"], machine["client_secret"], scope="reports:read", timeout=30
        ) as service:  # client_secret_basic, authlib's default
            issued = await service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
            assert issued["token_type"] == "Bearer" and issued["scope"] == "reports:read"
            assert "refresh_token" not in issued and "id_token" not in issued
            seen = (
                await service.introspect_token(metadata["introspection_endpoint"], token=issued["access_token"])
            ).json()
            assert seen["active"] is True and seen["client_id"] == seen["sub"] == machine["client_id"]
            assert seen["scope"] == "reports:read"
            with pytest.raises(OAuthError) as wider:
                await service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", scope="openid")
            assert wider.value.error == "invalid_scope"


# ---- a resource server on the JWKS alone; two instances pick up rotation and retirement ------


async def test_rotation_and_retirement_reach_a_jwks_resource_server_and_every_instance(
    settings: Settings, tmp_path: Path
) -> None:
    await create_user(settings, username="rita")
    with api_servers(
        settings,
        tmp_path,
        2,
        JWT_ALGORITHM="ES256",
        KEY_REFRESH_SECONDS="1",
        RATE_LIMIT_LOGIN="100/minute",
        RATE_LIMIT_API="10000/minute",
    ) as (a, b):
        # Both started on an empty key table: one made the first key, and both sign with it from
        # their first request (the other one reloads when it finds the key: lib/keyring.py).
        (first_kid,) = await _kids(a)
        assert await _kids(b) == [first_kid]
        server = JwksResourceServer(
            f"{a}/.well-known/jwks.json", issuer="auth-service", audience="auth-service-clients", cooldown=0.2
        )
        async with httpx.AsyncClient(timeout=10) as http:

            async def valid_at(base: str, token: str) -> bool:
                answer = await http.get(f"{base}{VERIFY}", headers=bearer(token))
                assert answer.status_code in (200, 401), answer.text
                return answer.status_code == 200 and answer.json()["valid"] is True

            old = (await _login(http, a, "rita"))["access_token"]
            assert _kid_of(old) == first_kid
            claims = await server.verify(old)
            assert claims["_kid"] == first_kid and claims["username"] == "rita" and server.fetches == 1
            assert await valid_at(a, old) and await valid_at(b, old)
            with pytest.raises(TokenRefused, match="no published key nobody"):
                await server.verify(_with_kid(old, "nobody"))

            new_kid = await _rotate_now(settings)
            # A signs with the new key once it has reread the keys (KEY_REFRESH_SECONDS=1).
            await poll("instance A signs with the new key", lambda: _has_kid(a, new_kid), timeout=10)
            new = (await _login(http, a, "rita"))["access_token"]
            assert _kid_of(new) == new_kid
            # The resource server holds only the old key: the unknown kid makes it fetch the JWKS again.
            fetched = server.fetches  # the forged kid above may have cost a fetch, or the cooldown saved it
            assert (await server.verify(new))["_kid"] == new_kid and server.fetches == fetched + 1
            # B verifies A's new token once it has read the new key itself: within its refresh
            # period (1 s) plus slack.
            await poll("instance B accepts the new key's token", lambda: valid_at(b, new), timeout=5)
            # The old key is retiring: still published, its tokens still good everywhere.
            assert set(await _kids(b)) == {first_kid, new_kid}
            assert await valid_at(a, old) and await valid_at(b, old) and await server.verify(old)

            await _retire(settings, first_kid)
            await poll("A refuses the retired key's token", lambda: _refused(valid_at(a, old)), timeout=5)
            await poll("B refuses the retired key's token", lambda: _refused(valid_at(b, old)), timeout=5)
            for base in (a, b):
                assert await _kids(base) == [new_kid]
                assert await valid_at(base, new)  # the successor's tokens are untouched
            answer = await http.get(f"{b}{VERIFY}", headers=bearer(old))
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
            # A resource server that caches the JWKS for its max-age (300 s) learns of a retirement
            # only when it fetches again: then it refuses the old key's tokens too.
            assert (await server.verify(old))["_kid"] == first_kid
            await server.refresh()
            with pytest.raises(TokenRefused, match="no published key"):
                await server.verify(old)
            assert (await server.verify(new))["_kid"] == new_kid


async def _refused(accepted: Awaitable[bool]) -> bool:
    return not await accepted


def _with_kid(token: str, kid: str) -> str:
    """`token` with its header naming another kid (the signature no longer matches either)."""
    header_segment, rest = token.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**header, "kid": kid}).encode()).rstrip(b"=").decode()
    return f"{forged}.{rest}"
