"""The OpenID Connect provider in process, on real PostgreSQL and Redis: the code flow with PKCE
through the real /login form, the ID token checked against the JWKS, userinfo, refresh,
introspection, revocation, logout, client_credentials, and the attacks RFC 9700 lists."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.factories import DEFAULT_PASSWORD, bearer
from tests.integration.oauth.flow import (
    ISSUER,
    REDIRECT,
    authorize_url,
    code_of,
    exchange,
    oidc,
    oidc_settings,
    pkce,
    register,
    sign_in,
)

__all__ = ["oidc", "oidc_settings"]  # fixtures


async def test_the_code_flow_end_to_end(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin, post_logout_redirect_uris=["https://app.example.com/bye"])
    verifier, challenge = pkce()
    url = authorize_url(app["client_id"], challenge)
    state = parse_qs(urlsplit(url).query)["state"][0]
    nonce = parse_qs(urlsplit(url).query)["nonce"][0]
    code = code_of(await sign_in(client, url), state)

    tokens = await exchange(client, app, code, verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "openid profile email offline_access"
    jwks = KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json())
    id_token = jwt.decode(body["id_token"], jwks, algorithms=["ES256"])
    claims = id_token.claims
    assert claims["iss"] == ISSUER and claims["aud"] == app["client_id"] and claims["nonce"] == nonce
    assert claims["amr"] == ["pwd"] and {"sub", "exp", "iat", "auth_time", "at_hash", "sid"} <= set(claims)
    assert claims["email"] == "alice@example.com" and claims["preferred_username"] == "alice"
    half = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(half).rstrip(b"=").decode()

    info = await client.get("/oauth2/userinfo", headers=bearer(body["access_token"]))
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"] and info.json()["email_verified"] is True

    # The session is one like any other: the user sees it with its client.
    sessions = await client.get("/api/v1/users/me/sessions", headers=bearer(body["access_token"]))
    assert sessions.status_code == 200 and len(sessions.json()) == 2  # the sign-in's and the app's

    auth = (app["client_id"], app["client_secret"])
    refreshed = await client.post(
        "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=auth
    )
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != body["refresh_token"] and new["scope"] == body["scope"]

    live = await client.post("/oauth2/introspect", data={"token": new["access_token"]}, auth=auth)
    assert live.json()["active"] is True and live.json()["client_id"] == app["client_id"]
    assert (await client.post("/oauth2/introspect", data={"token": new["refresh_token"]}, auth=auth)).json()["active"]

    assert (await client.post("/oauth2/revoke", data={"token": new["refresh_token"]}, auth=auth)).status_code == 200
    dead = await client.post("/oauth2/introspect", data={"token": new["access_token"]}, auth=auth)
    assert dead.json() == {"active": False}
    again = await client.post(
        "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}, auth=auth
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # RP-initiated logout with the ID token: the sign-in session ends, the app is sent back.
    out = await client.get(
        "/oauth2/logout?"
        + urlencode(
            {"id_token_hint": body["id_token"], "post_logout_redirect_uri": "https://app.example.com/bye", "state": "x"}
        )
    )
    assert out.status_code == 302 and out.headers["location"] == "https://app.example.com/bye?state=x"
    verifier, challenge = pkce()
    after = await client.get(authorize_url(app["client_id"], challenge, prompt="none"))
    assert parse_qs(urlsplit(after.headers["location"]).query)["error"] == ["login_required"]


async def test_code_reuse_revokes_what_the_first_use_issued(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    verifier, challenge = pkce()
    code = code_of(await sign_in(client, authorize_url(app["client_id"], challenge)))
    first = (await exchange(client, app, code, verifier)).json()
    replay = await exchange(client, app, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    auth = (app["client_id"], app["client_secret"])
    assert (await client.post("/oauth2/introspect", data={"token": first["access_token"]}, auth=auth)).json() == {
        "active": False
    }
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    assert (await client.post("/oauth2/token", data=refresh, auth=auth)).json()["error"] == "invalid_grant"


async def test_pkce_and_redirect_uri_attacks(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    other = await register(client, admin, name="Other")
    verifier, challenge = pkce()
    code = code_of(await sign_in(client, authorize_url(app["client_id"], challenge)))
    # A wrong verifier burns the code.
    wrong = await exchange(client, app, code, pkce()[0])
    assert wrong.json()["error"] == "invalid_grant"
    assert (await exchange(client, app, code, verifier)).json()["error"] == "invalid_grant"

    # Another client's code.
    verifier, challenge = pkce()
    code = code_of(await client.get(authorize_url(app["client_id"], challenge)))
    stolen = await exchange(client, other, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    # PKCE downgrade: plain or missing is refused in the redirect.
    for extra in ({"code_challenge_method": "plain"}, {"code_challenge": "", "code_challenge_method": ""}):
        refused = await client.get(authorize_url(app["client_id"], challenge, **extra))
        query = parse_qs(urlsplit(refused.headers["location"]).query)
        assert query["error"] == ["invalid_request"] and query["iss"] == [ISSUER]
    # state missing.
    refused = await client.get(authorize_url(app["client_id"], challenge, state=""))
    assert parse_qs(urlsplit(refused.headers["location"]).query)["error"] == ["invalid_request"]

    # A redirect URI that differs by a trailing slash, a path, a port or a case: a page, never a redirect.
    for uri in (REDIRECT + "/", REDIRECT + "x", "https://app.example.com:8443/callback", REDIRECT.upper()):
        url = authorize_url(app["client_id"], challenge).replace(
            urlencode({"redirect_uri": REDIRECT}), urlencode({"redirect_uri": uri})
        )
        page = await client.get(url)
        assert page.status_code == 400 and "location" not in page.headers and "redirect_uri" in page.text
    unknown = await client.get(authorize_url("nobody", challenge))
    assert unknown.status_code == 400 and "location" not in unknown.headers


async def test_client_authentication_and_client_credentials(oidc: Any) -> None:
    client, admin = oidc
    service = await register(
        client, admin, name="Service", grant_types=["client_credentials"], redirect_uris=[], scopes=["reports:read"]
    )
    auth = (service["client_id"], service["client_secret"])
    granted = await client.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "reports:read" and "refresh_token" not in granted.json()
    token = granted.json()["access_token"]
    introspected = await client.post("/oauth2/introspect", data={"token": token}, auth=auth)
    assert introspected.json()["active"] is True and introspected.json()["client_id"] == service["client_id"]
    # Wrong secret, unknown client, secret in both places: 401 invalid_client with a challenge.
    for kwargs in (
        {"auth": (service["client_id"], "wrong")},
        {"auth": ("nobody", "x")},
    ):
        refused = await client.post("/oauth2/token", data={"grant_type": "client_credentials"}, **kwargs)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert refused.headers["www-authenticate"].startswith("Basic")
    both = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "client_secret": "x"}, auth=auth
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    # No implicit or password grant.
    password = await client.post(
        "/oauth2/token", data={"grant_type": "password", "username": "alice", "password": DEFAULT_PASSWORD}, auth=auth
    )
    assert password.json()["error"] == "unsupported_grant_type"
    implicit = await client.get(
        "/oauth2/authorize?" + urlencode({"response_type": "token", "client_id": service["client_id"]})
    )
    assert implicit.status_code == 400


async def test_consent_for_a_third_party_client_is_asked_once(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin, first_party=False, name="Third party")
    verifier, challenge = pkce()
    consent = await sign_in(client, authorize_url(app["client_id"], challenge))
    assert consent.status_code == 200 and "Third party" in consent.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', consent.text)
    signed = re.search(r'name="request" value="([^"]+)"', consent.text)
    assert csrf and signed
    allowed = await client.post(
        "/oauth2/consent", data={"csrf": csrf.group(1), "request": signed.group(1), "decision": "allow"}
    )
    code = code_of(allowed)
    assert (await exchange(client, app, code, verifier)).status_code == 200
    # Remembered: the next authorization goes straight to a code.
    verifier, challenge = pkce()
    assert code_of(await client.get(authorize_url(app["client_id"], challenge)))


async def test_prompt_none_without_a_session_and_the_envelope_elsewhere(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    _, challenge = pkce()
    response = await client.get(authorize_url(app["client_id"], challenge, prompt="none"))
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["login_required"]
    bad = await client.post("/oauth2/token", content=b"{}", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and set(bad.json()) == {"error", "error_description"}
