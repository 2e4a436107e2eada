"""The provider under attack: tokens mixed between clients, a public client's refresh replayed,
a code redeemed twice at once, forged ID tokens, a client-secret timing probe, and the sessions
that revocations elsewhere must end."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import random
import re
import statistics
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.lib.audit import CLI
from auth_service.lib.crypto.keys import generate, unwrap_private
from auth_service.lib.crypto.totp import current_step
from auth_service.settings import Settings
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.integration.auth.mfa import code_at, enrol
from tests.integration.conftest import login
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _tokens(client: AsyncTestClient[Any], app: dict[str, Any]) -> dict[str, Any]:
    verifier, challenge = pkce()
    response = await client.get(authorize_url(app["client_id"], challenge))
    code = code_of(response) if response.status_code == 302 and "code=" in response.headers["location"] else None
    if code is None:
        code = code_of(await sign_in(client, authorize_url(app["client_id"], challenge)))
    answer = await exchange(client, app, code, verifier)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


async def _active(client: AsyncTestClient[Any], app: dict[str, Any], token: str) -> bool:
    auth = (app["client_id"], app["client_secret"])
    return bool((await client.post("/oauth2/introspect", data={"token": token}, auth=auth)).json()["active"])


async def test_tokens_do_not_mix_between_clients(oidc: Any) -> None:
    client, admin = oidc
    a, b = await register(client, admin, name="A"), await register(client, admin, name="B")
    tokens = await _tokens(client, a)
    b_auth = (b["client_id"], b["client_secret"])
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    stolen = await client.post("/oauth2/token", data=refresh, auth=b_auth)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # B cannot read A's refresh token, nor end A's session by revoking its tokens.
    peek = await client.post("/oauth2/introspect", data={"token": tokens["refresh_token"]}, auth=b_auth)
    assert peek.json() == {"active": False}
    for token in (tokens["refresh_token"], tokens["access_token"]):
        assert (await client.post("/oauth2/revoke", data={"token": token}, auth=b_auth)).status_code == 200
    assert await _active(client, a, tokens["access_token"])
    # Our own API's refresh endpoint does not take an OAuth session's token either.
    ours = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert ours.status_code == 401
    assert (
        await client.post("/oauth2/token", data=refresh, auth=(a["client_id"], a["client_secret"]))
    ).status_code == 200


async def test_a_public_clients_refresh_replayed_after_the_grace_ends_the_session(
    database_url: str, redis_url: str
) -> None:
    settings = make_settings(database_url, redis_url, public_base_url=ISSUER, refresh_reuse_grace_seconds="0")
    await create_user(settings, username="root", roles=["admin"])
    await create_user(settings, username="alice")
    async with AsyncTestClient(app=create_app(settings), base_url=ISSUER) as client:
        admin = bearer((await login(client, "root"))["access_token"])
        client.cookies.clear()
        client.follow_redirects = False
        app = await register(client, admin, type="public")
        verifier, challenge = pkce()
        code = code_of(await sign_in(client, authorize_url(app["client_id"], challenge)))
        first = (await exchange(client, app, code, verifier)).json()
        rotate = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": app["client_id"]}
        second = await client.post("/oauth2/token", data=rotate)
        assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
        replay = await client.post("/oauth2/token", data=rotate)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # The thief's replay ended the session: the successor the client holds is dead too.
        successor = {**rotate, "refresh_token": second.json()["refresh_token"]}
        assert (await client.post("/oauth2/token", data=successor)).json()["error"] == "invalid_grant"
        info = await client.get("/oauth2/userinfo", headers=bearer(second.json()["access_token"]))
        assert info.status_code == 401 and "invalid_token" in info.headers["www-authenticate"]


async def test_a_code_redeemed_twice_at_once_leaves_no_live_session(oidc: Any) -> None:
    """Both exchanges race through one Redis script each; whichever wins, the other's second
    use ends the session the first opened (or makes the first revoke it as it settles)."""
    client, admin = oidc
    app = await register(client, admin)
    await _tokens(client, app)  # signed in
    for _ in range(5):
        verifier, challenge = pkce()
        code = code_of(await client.get(authorize_url(app["client_id"], challenge)))
        answers = await asyncio.gather(*(exchange(client, app, code, verifier) for _ in range(2)))
        ok = [a.json() for a in answers if a.status_code == 200]
        assert len(ok) <= 1 and any(a.status_code == 400 for a in answers)
        for tokens in ok:
            assert not await _active(client, app, tokens["access_token"])


async def test_revocations_elsewhere_end_oauth_sessions(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    tokens = await _tokens(client, app)
    alice = (await client.get("/oauth2/userinfo", headers=bearer(tokens["access_token"]))).json()["sub"]
    deactivated = await client.patch(f"/api/v1/admin/users/{alice}", json={"is_active": False}, headers=admin)
    assert deactivated.status_code == 200, deactivated.text
    assert (await client.get("/oauth2/userinfo", headers=bearer(tokens["access_token"]))).status_code == 401
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    dead = await client.post("/oauth2/token", data=refresh, auth=(app["client_id"], app["client_secret"]))
    assert dead.json()["error"] == "invalid_grant"
    # The browser's sign-in session died with it: authorizing asks for a login again.
    _, challenge = pkce()
    again = await client.get(authorize_url(app["client_id"], challenge, prompt="none"))
    assert parse_qs(urlsplit(again.headers["location"]).query)["error"] == ["login_required"]


async def test_forged_or_retired_id_tokens_are_refused_as_hints(oidc: Any, oidc_settings: Settings) -> None:
    client, admin = oidc
    app = await register(client, admin, post_logout_redirect_uris=["https://app.example.com/bye"])
    tokens = await _tokens(client, app)
    head, payload, _ = tokens["id_token"].split(".")
    public = (await client.get("/.well-known/jwks.json")).json()["keys"][0]
    kid = public["kid"]
    none = f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{payload}."
    hs_head = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    mac = hmac.new(json.dumps(public).encode(), f"{hs_head}.{payload}".encode(), hashlib.sha256).digest()
    confused = f"{hs_head}.{payload}.{_b64(mac)}"
    other = generate("ES256", b"\0" * 32)
    stranger = unwrap_private("ES256", other.kid, other.private_key, b"\0" * 32)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    foreign = jwt.encode({"alg": "ES256", "kid": kid, "typ": "JWT"}, claims, stranger)
    garbage = {"list-header": f"{_b64(b'[]')}.{payload}.x", "not-json": "bm9wZQ.x.y", "no-dots": "x" * 40}
    for name, hint in {"none": none, "hs256-public": confused, "foreign-key": foreign, **garbage}.items():
        query = {"id_token_hint": hint, "post_logout_redirect_uri": "https://app.example.com/bye"}
        response = await client.get("/oauth2/logout?" + urlencode(query))
        assert response.status_code == 400 and "location" not in response.headers, name
    # A retired key's ID tokens stop being hints once the instance sees the retirement.
    operator = Resources(oidc_settings, pool_size=1)
    try:
        await operator.keyring.retire(kid, CLI)
    finally:
        await operator.close()
    # The app rereads its keys every KEY_REFRESH_SECONDS (0.2 s here: flow.py); its ring lives on
    # the app's own loop, so the test waits for it rather than reloading it from this one.
    query = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://app.example.com/bye"}
    deadline = time.monotonic() + 5
    while (response := await client.get("/oauth2/logout?" + urlencode(query))).status_code != 400:
        assert response.status_code == 302 and time.monotonic() < deadline, response.status_code
        await asyncio.sleep(0.05)
    assert "location" not in response.headers
    assert head  # the real ID token was the template


@pytest.mark.serial  # a timing comparison
async def test_a_client_secret_probe_learns_nothing_from_time_or_answer(
    oidc: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown client, right client with a wrong secret, a public client given a secret: the same
    401 and the same time (interleaved in one shuffled sequence; generous bounds, as the login's)."""
    client, admin = oidc
    confidential = await register(client, admin, name="C")
    public = await register(client, admin, name="P", type="public")
    kinds = {
        "unknown client": ("a" * 22, "wrong-secret-" + "x" * 30),
        "wrong secret": (confidential["client_id"], "wrong-secret-" + "x" * 30),
        "public client": (public["client_id"], "wrong-secret-" + "x" * 30),
    }
    sequence = [kind for kind in kinds for _ in range(60)]
    random.Random(7).shuffle(sequence)
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    shapes: dict[str, Any] = {}
    for n, kind in enumerate(sequence):
        started = time.perf_counter()
        response = await client.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=kinds[kind])
        elapsed = time.perf_counter() - started
        assert response.status_code == 401
        headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
        shapes.setdefault(kind, (response.json(), headers))
        if n >= 15:
            timings[kind].append(elapsed)
    assert all(shape == shapes["unknown client"] for shape in shapes.values()), shapes
    overall = statistics.median([t for values in timings.values() for t in values])
    medians = {kind: statistics.median(values) for kind, values in timings.items()}
    with capsys.disabled():
        print("\nclient authentication failures (median ms; ratio to the overall median):")
        for kind, median in medians.items():
            print(f"  {kind:15s} {median * 1000:6.2f}   {median / overall:.3f}")
    for kind, median in medians.items():
        assert 0.75 <= median / overall <= 1.33, f"{kind}: {median * 1000:.2f} ms vs {overall * 1000:.2f} ms"


async def test_a_refresh_may_narrow_the_scope_never_widen_it(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    tokens = await _tokens(client, app)
    auth = (app["client_id"], app["client_secret"])
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": "openid offline_access"}
    narrow = await client.post("/oauth2/token", data=form, auth=auth)
    assert narrow.status_code == 200 and narrow.json()["scope"] == "openid offline_access"
    info = (await client.get("/oauth2/userinfo", headers=bearer(narrow.json()["access_token"]))).json()
    assert "email" not in info and "preferred_username" not in info  # the narrower token's scope
    # The session keeps what it was granted: the next refresh, without a scope, has it all.
    whole = {"grant_type": "refresh_token", "refresh_token": narrow.json()["refresh_token"]}
    again = await client.post("/oauth2/token", data=whole, auth=auth)
    assert again.json()["scope"] == "openid profile email offline_access"
    wider = {**whole, "refresh_token": again.json()["refresh_token"], "scope": "openid admin"}
    refused = await client.post("/oauth2/token", data=wider, auth=auth)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    kept = {**whole, "refresh_token": again.json()["refresh_token"]}  # the refusal spent nothing
    assert (await client.post("/oauth2/token", data=kept, auth=auth)).status_code == 200


async def test_the_sign_in_form_takes_the_second_step_and_its_amr_reaches_the_id_token(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    access = (await login(client))["access_token"]
    client.cookies.clear()
    secret, _ = await enrol(client, access)
    verifier, challenge = pkce()
    first = await client.get(authorize_url(app["client_id"], challenge))
    form_page = await client.get(first.headers["location"])
    fields = dict(re.findall(r'name="(csrf|return_to)" value="([^"]*)"', form_page.text))
    posted = await client.post(
        "/login",
        data={"username": "alice", "password": DEFAULT_PASSWORD, **{k: html.unescape(v) for k, v in fields.items()}},
    )
    assert posted.status_code == 200 and 'action="/login/mfa"' in posted.text  # the second step's form
    step = dict(re.findall(r'name="(csrf|mfa_token|return_to)" value="([^"]*)"', posted.text))
    step = {k: html.unescape(v) for k, v in step.items()}
    wrong = await client.post("/login/mfa", data={**step, "code": "000000"})
    assert wrong.status_code == 401 and "did not work" in wrong.text
    done = await client.post("/login/mfa", data={**step, "code": code_at(secret, current_step())})
    assert done.status_code == 303, done.text
    code = code_of(await client.get(done.headers["location"]))
    tokens = (await exchange(client, app, code, verifier)).json()
    claims = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[1] + "=="))
    assert set(claims["amr"]) >= {"pwd", "otp", "mfa"}


async def test_the_sign_in_form_keeps_the_logins_limits_and_its_csrf(database_url: str, redis_url: str) -> None:
    settings = make_settings(database_url, redis_url, public_base_url=ISSUER, rate_limit_login_failures="3/15minute")
    await create_user(settings, username="alice")
    async with AsyncTestClient(app=create_app(settings), base_url=ISSUER) as client:
        page = await client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        forged = await client.post("/login", data={"username": "alice", "password": "x", "csrf": "forged"})
        assert forged.status_code == 403 and "expired" in forged.text
        statuses = []
        for _ in range(5):
            response = await client.post(
                "/login", data={"username": "alice", "password": "wrong", "csrf": csrf.group(1)}
            )
            statuses.append(response.status_code)
        assert statuses[:3] == [401, 401, 401] and 429 in statuses[3:], statuses
        # A return_to elsewhere is never followed: the sign-in ends on our own page.
        evil = await client.post(
            "/login",
            data={"username": "nobody", "password": "x", "csrf": csrf.group(1), "return_to": "https://evil.example/"},
        )
        assert 'name="return_to" value=""' in evil.text


async def test_malformed_requests_get_an_answer_never_a_500(oidc: Any) -> None:
    client, admin = oidc
    app = await register(client, admin)
    cid = app["client_id"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/oauth2/authorize?client_id={cid}&client_id={cid}", {}),
        ("GET", "/oauth2/authorize?client_id=%00", {}),
        ("GET", "/oauth2/authorize?client_id=" + "a" * 5000, {}),
        ("GET", f"/oauth2/authorize?client_id={cid}&redirect_uri=%ff%fe", {}),
        ("GET", "/oauth2/authorize?" + urlencode({"client_id": cid, "redirect_uri": REDIRECT, "max_age": "-1"}), {}),
        ("GET", "/oauth2/authorize?" + urlencode({"client_id": cid, "redirect_uri": REDIRECT, "scope": "\x01"}), {}),
        ("POST", "/oauth2/token", {"content": b"\xff\xfe=\xff", "headers": form}),
        (
            "POST",
            "/oauth2/token",
            {"content": b"grant_type=password", "headers": {**form, "Authorization": "Basic %%%"}},
        ),
        (
            "POST",
            "/oauth2/token",
            {"content": b"grant_type=x", "headers": {**form, "Authorization": "Basic bm9jb2xvbg=="}},
        ),
        ("POST", "/oauth2/token", {"content": b"grant_type=x", "headers": {**form, "Authorization": "Bearer x"}}),
        ("POST", "/oauth2/token", {"content": b"grant_type=authorization_code&grant_type=x", "headers": form}),
        ("POST", "/oauth2/introspect", {"content": b"token=" + b"a" * 5000, "headers": form}),
        ("POST", "/oauth2/revoke", {"content": b"token=%00", "headers": form}),
        ("GET", "/oauth2/userinfo", {"headers": {"Authorization": "Bearer " + "x." * 50}}),
        ("GET", "/oauth2/userinfo", {"headers": {"Authorization": "Basic abc"}}),
        ("GET", "/oauth2/logout?state=a&state=b", {}),
        ("GET", "/oauth2/logout?post_logout_redirect_uri=https://evil.example/", {}),
        ("POST", "/oauth2/consent", {"content": b"request=x.y&csrf=z&decision=allow", "headers": form}),
        ("POST", "/oauth2/consent", {"content": b"\xff", "headers": form}),
        ("POST", "/login", {"content": b"username=%00&password=x&csrf=", "headers": form}),
        ("POST", "/login/mfa", {"content": b"mfa_token=" + b"m" * 3000 + b"&code=1", "headers": form}),
        ("GET", "/login?return_to=" + "x" * 5000, {}),
    ]
    for method, url, kwargs in requests:
        response = await client.request(method, url, **kwargs)
        assert response.status_code < 500, (method, url, response.status_code, response.text[:200])
        assert "Traceback" not in response.text
    logout = await client.get("/oauth2/logout?post_logout_redirect_uri=https://evil.example/")
    assert logout.status_code == 400 and "location" not in logout.headers
