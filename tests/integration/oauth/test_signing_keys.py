"""Managed signing keys: the JWKS and discovery documents, ES256 access tokens verified from
the JWKS alone, and the key schedule (next -> active -> retiring -> removed) on real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.lib.audit import CLI
from auth_service.lib.crypto.keys import generate, unwrap_private
from auth_service.lib.keyring import KeyRing, RotationRefused
from auth_service.settings import Settings
from db.models import AuditEvent, SigningKey
from tests.conftest import make_settings
from tests.factories import bearer, create_user
from tests.integration.conftest import login


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def es256(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, jwt_algorithm="ES256", public_base_url="https://id.example.test/")


async def test_the_jwks_publishes_the_first_key_cacheably(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    (key,) = response.json()["keys"]
    assert key["alg"] == "ES256" and key["kty"] == "EC" and key["crv"] == "P-256" and key["use"] == "sig"
    assert "d" not in key  # never the private half
    again = await client.get("/.well-known/jwks.json", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_discovery_names_every_endpoint_under_the_issuer(es256: Settings) -> None:
    async with AsyncTestClient(app=create_app(es256)) as client:
        response = await client.get("/.well-known/openid-configuration")
        rfc8414 = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    document = response.json()
    assert document["issuer"] == "https://id.example.test"  # PUBLIC_BASE_URL without its trailing slash
    endpoints = [v for k, v in document.items() if k.endswith("_endpoint") or k == "jwks_uri"]
    assert len(endpoints) == 7 and all(v.startswith("https://id.example.test/") for v in endpoints)
    assert document["jwks_uri"] == "https://id.example.test/.well-known/jwks.json"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["scopes_supported"]) == {"openid", "profile", "email", "offline_access"}
    assert "implicit" not in document["grant_types_supported"] and "password" not in document["grant_types_supported"]
    assert document["response_types_supported"] == ["code"]
    assert rfc8414.json() == document


async def test_es256_access_tokens_verify_from_the_jwks_alone(es256: Settings) -> None:
    """A resource server with nothing but the published keys (joserfc) accepts our token."""
    await create_user(es256, username="alice")
    async with AsyncTestClient(app=create_app(es256)) as client:
        tokens = await login(client)
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert (await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 200
    header = _header(tokens["access_token"])
    assert header == {"alg": "ES256", "kid": jwks["keys"][0]["kid"], "typ": "at+jwt"}
    token = jwt.decode(tokens["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert token.claims["username"] == "alice" and token.claims["iss"] == es256.tokens.issuer


async def test_forged_tokens_against_the_published_key_are_refused(es256: Settings) -> None:
    await create_user(es256, username="alice")
    async with AsyncTestClient(app=create_app(es256)) as client:
        tokens = await login(client)
        public = (await client.get("/.well-known/jwks.json")).json()["keys"][0]
        head, payload, _ = tokens["access_token"].split(".")
        kid = public["kid"]
        forged = {
            # alg none, no signature
            "none": f"{_b64(json.dumps({'alg': 'none', 'kid': kid, 'typ': 'at+jwt'}).encode())}.{payload}.",
        }
        # HS256 keyed with the public JWK's JSON (the classic algorithm confusion)
        hs_head = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
        secret = json.dumps(public).encode()
        mac = hmac.new(secret, f"{hs_head}.{payload}".encode(), hashlib.sha256).digest()
        forged["hs256-public"] = f"{hs_head}.{payload}.{_b64(mac)}"
        # our header, another key's signature
        other = generate("ES256", b"\0" * 32)
        stranger = unwrap_private("ES256", other.kid, other.private_key, b"\0" * 32)
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged["stranger"] = jwt.encode(_header(tokens["access_token"]), claims, stranger, algorithms=["ES256"])
        forged["unknown-kid"] = jwt.encode({"alg": "ES256", "kid": other.kid, "typ": "at+jwt"}, claims, stranger)
        for name, token in forged.items():
            response = await client.get("/api/v1/auth/verify", headers=bearer(token))
            assert response.status_code == 401, name
            assert response.json()["error"]["code"] == "AUTH_TOKEN_INVALID", name
        assert head  # the real token's header was the template


async def test_a_rotation_publishes_at_once_signs_after_the_delay_and_retires_the_old_key(
    settings: Settings, db_session: AsyncSession
) -> None:
    """The whole schedule on one ring whose clock the test moves."""
    now = [dt.datetime.now(dt.UTC)]
    resources = Resources(settings, pool_size=1)
    ring = KeyRing(
        resources.session_factory,
        settings.purpose_keys.key("signing-key-wrap"),
        algorithm="ES256",
        rotation_delay=900,
        retire_after=3660,
        clock=lambda: now[0],
    )
    try:
        first = await ring.ensure()
        assert first is not None and ring.signer() is not None and ring.signer().kid == first.kid
        assert await ring.ensure() is None  # one may sign: nothing to do

        second = await ring.rotate(CLI)
        assert [k["kid"] for k in json.loads(ring.jwks())["keys"]] == [second.kid, first.kid]
        assert ring.signer().kid == first.kid  # published, not yet signing
        with pytest.raises(RotationRefused, match="already waits"):
            await ring.rotate(CLI)

        now[0] += dt.timedelta(seconds=901)
        assert ring.signer().kid == second.kid  # from the timestamps alone, before any reload
        await ring.load()
        rows = {r.kid: r for r in (await db_session.execute(select(SigningKey))).scalars()}
        assert rows[second.kid].state == "active" and rows[first.kid].state == "retiring"
        assert rows[first.kid].removes_at == rows[second.kid].activates_at + dt.timedelta(seconds=3660)
        assert ring.verifying(first.kid) is not None  # its tokens may still be alive

        now[0] += dt.timedelta(seconds=3661)
        await ring.load()
        await db_session.reset()
        removed = await db_session.get(SigningKey, first.kid)
        assert removed is not None and removed.state == "removed" and removed.private_key is None
        assert ring.verifying(first.kid) is None
        assert [k["kid"] for k in json.loads(ring.jwks())["keys"]] == [second.kid]
        actions = (await db_session.execute(select(AuditEvent.action, AuditEvent.target_id))).all()
        assert ("key.rotate", second.kid) in actions
    finally:
        await resources.close()


async def _until(check: Any, seconds: float = 5.0) -> Any:
    """Poll `check` (async, truthy when done) until it holds; the instance rereads its keys meanwhile."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "the instance did not see the change in time"
        await asyncio.sleep(0.05)
    return result


async def test_retiring_the_signing_key_refuses_its_tokens_and_signs_with_another(
    database_url: str, redis_url: str
) -> None:
    """The operator's `just keys` (another process: here another ring on the same database) and
    an instance that rereads its keys every 0.2 s."""
    settings = make_settings(database_url, redis_url, jwt_algorithm="ES256", key_refresh_seconds="0.2")
    await create_user(settings, username="alice")
    operator = Resources(settings, pool_size=1)
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            old = (await login(client))["access_token"]
            waiting = await operator.keyring.rotate(CLI)  # a next key waits: the retirement makes it sign at once
            retired, successor = await operator.keyring.retire(_header(old)["kid"], CLI)
            assert successor is not None and successor.kid == waiting.kid

            async def refused() -> bool:
                response = await client.get("/api/v1/auth/verify", headers=bearer(old))
                return response.status_code == 401 and response.json()["error"]["code"] == "AUTH_TOKEN_INVALID"

            await _until(refused)
            new = (await login(client))["access_token"]
            assert _header(new)["kid"] == waiting.kid
            assert (await client.get("/api/v1/auth/verify", headers=bearer(new))).status_code == 200
            published = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
            assert published == [waiting.kid] and retired.kid not in published
            # Retiring the only key left makes a new one: something always signs.
            _, fresh = await operator.keyring.retire(waiting.kid, CLI)
            assert fresh is not None and operator.keyring.signer() is not None
            assert operator.keyring.signer().kid == fresh.kid

            async def signs_with_fresh() -> bool:
                return _header((await login(client))["access_token"])["kid"] == fresh.kid

            await _until(signs_with_fresh)
    finally:
        await operator.close()


async def test_private_keys_are_stored_only_wrapped(settings: Settings, db_session: AsyncSession) -> None:
    async with AsyncTestClient(app=create_app(settings)):
        pass
    row = (await db_session.execute(select(SigningKey))).scalar_one()
    assert row.private_key is not None and b"PRIVATE KEY" not in row.private_key
    key = settings.purpose_keys.key("signing-key-wrap")
    assert unwrap_private(row.algorithm, row.kid, row.private_key, key).is_private
    with pytest.raises(InvalidTag):  # another SECRET_KEY, or another row's kid as associated data
        unwrap_private(row.algorithm, row.kid, row.private_key, b"\1" * 32)
    with pytest.raises(InvalidTag):
        unwrap_private(row.algorithm, "another-kid", row.private_key, key)


@pytest.mark.parametrize("algorithm", ["RS256", "Ed25519"])
async def test_the_other_algorithms_sign_and_verify(database_url: str, redis_url: str, algorithm: str) -> None:
    settings = make_settings(database_url, redis_url, jwt_algorithm=algorithm, signing_key_algorithm=algorithm)
    await create_user(settings, username="alice")
    async with AsyncTestClient(app=create_app(settings)) as client:
        token = (await login(client))["access_token"]
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert (await client.get("/api/v1/auth/verify", headers=bearer(token))).status_code == 200
    assert _header(token)["alg"] == algorithm and jwks["keys"][0]["alg"] == algorithm
    jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[algorithm])
    with pytest.raises(BadSignatureError):
        jwt.decode(
            token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
            KeySet.import_key_set(jwks),
            algorithms=[algorithm],
        )


async def test_an_instance_that_loses_the_race_for_the_first_key_signs_with_the_winners_at_once(
    settings: Settings,
) -> None:
    """Two instances starting on an empty key table (several upgraded at once, without `just
    init`): the one whose `ensure` finds the other's new key signs with it at once, not only
    after its next reload, KEY_REFRESH_SECONDS later (until then its logins would be 503s)."""
    winner, loser = Resources(settings, pool_size=1), Resources(settings, pool_size=1)
    try:
        for instance in (winner, loser):
            await instance.keyring.load()  # both find no key
            assert instance.keyring.signer() is None
        made = await winner.keyring.ensure()
        assert made is not None
        assert await loser.keyring.ensure() is None  # one may sign now: nothing to make
        signer = loser.keyring.signer()
        assert signer is not None and signer.kid == made.kid
        assert [k["kid"] for k in json.loads(loser.keyring.jwks())["keys"]] == [made.kid]
    finally:
        await winner.close()
        await loser.close()


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/openid-configuration"])
async def test_the_fast_path_answers_what_the_route_does(database_url: str, redis_url: str, path: str) -> None:
    """The documents are answered in front of the router (server/dispatch.py), except for a CORS
    request, which the route answers: both say the same bytes, with the same headers."""
    settings = make_settings(database_url, redis_url, cors_origins="https://spa.example")
    async with AsyncTestClient(app=create_app(settings)) as client:
        fast = await client.get(path)
        routed = await client.get(path, headers={"Origin": "https://spa.example"})
        unchanged = await client.get(path, headers={"If-None-Match": fast.headers["etag"]})
    assert fast.status_code == routed.status_code == 200 and fast.content == routed.content
    for header in ("content-type", "cache-control", "etag", "x-content-type-options", "x-request-id"):
        assert (header in fast.headers) and (header in routed.headers), header
        if header != "x-request-id":
            assert fast.headers[header] == routed.headers[header], header
    assert routed.headers["access-control-allow-origin"] == "https://spa.example"
    assert unchanged.status_code == 304 and unchanged.content == b""
