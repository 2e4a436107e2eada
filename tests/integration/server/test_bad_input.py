"""Bad input gets its envelope and status, never a 500, and changes nothing stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LoginRecord, RefreshToken, TokenBlacklist, User
from tests.factories import bearer
from tests.integration.auth.test_auth_flow import assert_error
from tests.integration.conftest import login

JSON = {"Content-Type": "application/json"}


async def counts(session: AsyncSession) -> tuple[int, ...]:
    return tuple(
        [
            (await session.execute(select(func.count()).select_from(model))).scalar_one()
            for model in (User, LoginRecord, RefreshToken, TokenBlacklist)
        ]
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/auth/login", b"{not json", "body"),
        ("/api/v1/auth/login", b"[]", "body"),
        ("/api/v1/auth/login", b"null", "body"),
        ("/api/v1/auth/login", b"", "body"),
        ("/api/v1/auth/login", b'{"password": "x"}', "body"),
        ("/api/v1/auth/login", b'{"username": 5, "password": "x"}', "username"),
        ("/api/v1/auth/login", b'{"username": "a\\u0000b", "password": "x"}', "username"),
        ("/api/v1/auth/login", b'{"username": "alice", "password": "p\\u0000w"}', "password"),
        ("/api/v1/auth/login", json.dumps({"username": "a" * 256, "password": "x"}).encode(), "username"),
        ("/api/v1/auth/login", json.dumps({"username": "alice", "password": "x" * 1025}).encode(), "password"),
        ("/api/v1/auth/login", b'{"username": "", "password": "x"}', "username"),
        ("/api/v1/auth/refresh", b'{"refresh_token": 12}', "refresh_token"),
        ("/api/v1/auth/refresh", b'{"refresh_token": "has spaces and \\u0000"}', "refresh_token"),
        ("/api/v1/auth/refresh", b"{}", "body"),
    ],
)
async def test_malformed_bodies_are_validation_errors(
    client: AsyncTestClient[Any], db_session: AsyncSession, path: str, body: bytes, field: str
) -> None:
    before = await counts(db_session)
    response = await client.post(path, content=body, headers=JSON)
    assert_error(response, 400, "VALIDATION_ERROR")
    details = response.json()["error"]["details"]
    assert details and {"field", "message"} <= set(details[0])
    assert details[0]["field"] == field
    assert "\\x00" not in response.text
    assert await counts(db_session) == before


async def test_body_over_the_limit_is_413(client: AsyncTestClient[Any], db_session: AsyncSession) -> None:
    before = await counts(db_session)
    body = json.dumps({"username": "alice", "password": "x" * 70_000}).encode()
    assert_error(await client.post("/api/v1/auth/login", content=body, headers=JSON), 413, "PAYLOAD_TOO_LARGE")
    assert await counts(db_session) == before


async def test_non_json_content_type_is_415(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        content=b"username=alice&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_unknown_route_and_wrong_method(client: AsyncTestClient[Any]) -> None:
    assert_error(await client.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert_error(await client.get("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")
    assert_error(await client.request("TRACE", "/api/v1/auth/verify"), 405, "METHOD_NOT_ALLOWED")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(header)}.{enc(claims)}."


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6cHc=",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer " + "x" * 10_000,
        "Bearer two tokens",
        "Bearer " + _unsigned({"alg": "none", "typ": "at+jwt"}, {"sub": "x", "exp": 9999999999}),
    ],
)
async def test_missing_or_garbage_authorization_is_token_invalid(
    client: AsyncTestClient[Any], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/api/v1/auth/verify", headers=headers)
    assert_error(response, 401, "AUTH_TOKEN_INVALID")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_bearer_scheme_is_case_insensitive(client: AsyncTestClient[Any], alice: Any) -> None:
    tokens = await login(client)
    for scheme in ("bearer", "BEARER", "BeArEr"):
        response = await client.get(
            "/api/v1/auth/verify", headers={"Authorization": f"{scheme} {tokens['access_token']}"}
        )
        assert response.status_code == 200


async def test_token_in_query_string_is_not_read(client: AsyncTestClient[Any], alice: Any) -> None:
    tokens = await login(client)
    response = await client.get(f"/api/v1/auth/verify?access_token={tokens['access_token']}")
    assert_error(response, 401, "AUTH_TOKEN_INVALID")


async def test_logout_needs_a_valid_access_token(client: AsyncTestClient[Any], db_session: AsyncSession) -> None:
    before = await counts(db_session)
    assert_error(await client.post("/api/v1/auth/logout"), 401, "AUTH_TOKEN_INVALID")
    assert_error(
        await client.post("/api/v1/auth/logout", json={"everywhere": "yes"}, headers=bearer("x.y.z")),
        401,
        "AUTH_TOKEN_INVALID",
    )
    assert await counts(db_session) == before


@pytest.mark.parametrize("everywhere", [0, 1, "true", "false", "0"])
async def test_a_boolean_field_takes_only_json_booleans(
    client: AsyncTestClient[Any], alice: Any, db_session: AsyncSession, everywhere: Any
) -> None:
    """The document says `boolean`: `0` or `"true"` is a validation error, not a lax coercion
    (and nothing is revoked)."""
    tokens = await login(client)
    before = await counts(db_session)
    response = await client.post(
        "/api/v1/auth/logout", json={"everywhere": everywhere}, headers=bearer(tokens["access_token"])
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["error"]["details"][0]["field"] == "everywhere"
    assert await counts(db_session) == before
    assert (await client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 200


async def test_request_id_is_echoed_or_generated(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/nope", headers={"X-Request-ID": "trace-me.1_2-3"})
    assert response.headers["x-request-id"] == "trace-me.1_2-3"
    assert response.json()["error"]["request_id"] == "trace-me.1_2-3"
    response = await client.get("/api/v1/nope", headers={"X-Request-ID": "evil\tvalue"})
    assert response.headers["x-request-id"] != "evil\tvalue" and len(response.headers["x-request-id"]) == 32


async def test_unhandled_exception_is_a_plain_500(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from auth_service.domain.auth.service import AuthService

    async def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(AuthService, "refresh", explode)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "abc"})
    assert_error(response, 500, "INTERNAL_SERVER_ERROR")
    assert "secret internals" not in response.text and "Traceback" not in response.text


def _forge(settings: Any, **claims: Any) -> str:
    """A token signed with the service's real key, with chosen claims."""
    import time
    import uuid

    from joserfc import jwt
    from joserfc.jwk import OctKey

    from auth_service.lib.crypto.tokens import TokenService

    kid = TokenService(
        algorithm="HS256",
        secret=settings.tokens.secret,
        private_key_file="",
        public_key_file="",
        key_id="",
        issuer=settings.tokens.issuer,
        audience=settings.tokens.audience,
        access_ttl=60,
    ).key_id
    now = int(time.time())
    body = {
        "sub": str(uuid.uuid4()),
        "username": "x",
        "roles": [],
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "iss": settings.tokens.issuer,
        "aud": settings.tokens.audience,
    }
    body.update(claims)
    key = OctKey.import_key(settings.tokens.secret.encode())
    return jwt.encode({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, body, key, algorithms=["HS256"])


async def test_expired_and_foreign_tokens_over_http(client: AsyncTestClient[Any], settings: Any) -> None:
    import time

    expired = _forge(settings, iat=int(time.time()) - 7200, exp=int(time.time()) - 5)
    assert_error(await client.get("/api/v1/auth/verify", headers=bearer(expired)), 401, "AUTH_TOKEN_EXPIRED")
    other_audience = _forge(settings, aud="another-service")
    assert_error(await client.get("/api/v1/auth/verify", headers=bearer(other_audience)), 401, "AUTH_TOKEN_INVALID")
    other_issuer = _forge(settings, iss="someone-else")
    assert_error(await client.get("/api/v1/auth/verify", headers=bearer(other_issuer)), 401, "AUTH_TOKEN_INVALID")
    # Well-signed but for a user that does not exist: not valid.
    assert_error(await client.get("/api/v1/auth/verify", headers=bearer(_forge(settings))), 401, "AUTH_TOKEN_REVOKED")


async def test_cors_only_for_configured_origins(database_url: str, redis_url: str) -> None:
    from auth_service.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(database_url, redis_url, cors_origins="https://app.example.com")
    async with AsyncTestClient(app=create_app(settings)) as client:
        good = await client.get("/api/v1/health", headers={"Origin": "https://app.example.com"})
        assert good.headers.get("access-control-allow-origin") == "https://app.example.com"
        evil = await client.get("/api/v1/health", headers={"Origin": "https://evil.example.com"})
        assert "evil" not in evil.headers.get("access-control-allow-origin", "")


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=latin-1"])
async def test_a_body_that_is_not_utf8_is_a_validation_error(
    client: AsyncTestClient[Any], alice: Any, db_session: AsyncSession, path: str, content_type: str, caplog: Any
) -> None:
    tokens = await login(client)
    before = await counts(db_session)
    body = '{"username": "alic\xe9", "password": "p\xe4ss", "refresh_token": "\xff"}'.encode("latin-1")
    response = await client.post(
        path, content=body, headers={**bearer(tokens["access_token"]), "Content-Type": content_type}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["error"]["details"] == [{"field": "body", "message": "must be JSON encoded as UTF-8"}]
    assert await counts(db_session) == before
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback, no 5xx alert fodder
