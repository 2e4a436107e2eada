"""Web hardening, against the real app in process (real PostgreSQL and Redis):

- token responses are never cached;
- every response, errors and pages included, says its charset and `nosniff`;
- HSTS only when the request came over TLS (see test_tls.py for a real TLS socket);
- CORS answers configured origins only;
- wrong methods are 405 and non-JSON bodies 415, in the envelope;
- tokens in query strings are refused;
- no framework banner; /docs can be switched off and is off in production by default.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.container import Resources
from auth_service.server.hardening import with_charset
from auth_service.settings import Settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.security.harness import assert_envelope, hardened_settings, login, running

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
VERIFY = "/api/v1/auth/verify"
NOT_ME = "/api/v1/auth/not-me"
METRICS_TOKEN = "metrics-token-for-the-web-suite"
GOOD_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.net"


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return hardened_settings(database_url, redis_url, metrics_token=METRICS_TOKEN, cors_origins=GOOD_ORIGIN)


@pytest.fixture
async def client(settings: Settings) -> Any:
    @get("/test-only/boom", sync_to_thread=False, include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("database password is hunter2")  # must never reach the client

    app = create_app(settings)
    app.register(boom)
    async with running(settings, app=app) as test_client:
        yield test_client


@pytest.fixture
async def alice(settings: Settings) -> Any:
    return await create_user(settings, username="alice")


# ---- caching -------------------------------------------------------------------------------


async def test_token_responses_are_never_stored(client: AsyncTestClient[Any], alice: Any) -> None:
    logged_in = await client.post(LOGIN, json={"username": "alice", "password": DEFAULT_PASSWORD})
    refreshed = await client.post(REFRESH, json={"refresh_token": logged_in.json()["refresh_token"]})
    for response in (logged_in, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


# ---- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (b"application/json", b"application/json; charset=utf-8"),
        (b"application/vnd.oai.openapi+json", b"application/vnd.oai.openapi+json; charset=utf-8"),
        (b"text/html; charset=utf-8; charset=utf-8", b"text/html; charset=utf-8"),  # the not-me page did this
        (b"text/plain; version=0.0.4; charset=utf-8", b"text/plain; version=0.0.4; charset=utf-8"),
        (b"text/css", b"text/css; charset=utf-8"),
        (b"image/png", b"image/png"),
    ],
)
def test_textual_content_types_get_exactly_one_charset(given: bytes, expected: bytes) -> None:
    assert with_charset(given) == expected


def _request_matrix() -> list[tuple[str, str, dict[str, Any], int]]:
    json_body = {"json": {"username": "alice", "password": DEFAULT_PASSWORD}}
    return [
        ("POST", LOGIN, json_body, 200),
        ("POST", LOGIN, {"json": {"username": "alice", "password": "wrong password!"}}, 401),
        ("POST", LOGIN, {"json": {"username": ""}}, 400),
        ("POST", LOGIN, {"content": b"{" + b" " * 70_000 + b"}", "headers": {"Content-Type": "application/json"}}, 413),
        ("POST", LOGIN, {"content": b"username=alice", "headers": {"Content-Type": "text/plain"}}, 415),
        ("TRACE", LOGIN, {}, 405),
        ("GET", "/api/v1/nothing-here", {}, 404),
        ("GET", "/test-only/boom", {}, 500),
        ("GET", VERIFY, {}, 401),
        ("GET", "/api/v1/health", {}, 200),
        ("GET", "/docs", {}, 200),
        ("GET", "/docs/openapi.json", {}, 200),
        ("GET", "/docs-assets/swagger-ui.css", {}, 200),
        ("GET", "/docs-assets/swagger-ui-bundle.js", {}, 200),
        ("GET", "/metrics", {}, 401),
        ("GET", "/metrics", {"headers": {"Authorization": f"Bearer {METRICS_TOKEN}"}}, 200),
        ("GET", NOT_ME, {"params": {"token": "forged.link"}}, 400),
        ("GET", NOT_ME, {}, 400),  # no token at all: still the page, not JSON
        ("POST", NOT_ME, {"data": {"token": "forged.link"}}, 400),
    ]


async def test_every_response_declares_its_charset_and_nosniff(client: AsyncTestClient[Any], alice: Any) -> None:
    for method, path, kwargs, status in _request_matrix():
        response = await client.request(method, path, **kwargs)
        seen = f"{method} {path} -> {response.status_code} {response.headers.get('content-type')}"
        assert response.status_code == status, seen
        content_type = response.headers["content-type"]
        assert content_type.count("charset=") == 1 and content_type.endswith("charset=utf-8"), seen
        assert response.headers["x-content-type-options"] == "nosniff", seen
        if content_type.startswith("application/json") and status >= 400:
            error = assert_envelope(response, status, response.json()["error"]["code"])
            if status == 500:
                assert error["code"] == "INTERNAL_SERVER_ERROR" and error["message"] == "Internal server error"
                assert "hunter2" not in response.text


async def test_the_not_me_page_is_html_with_one_charset(client: AsyncTestClient[Any], settings: Settings) -> None:
    link = Resources(settings).links.sign(uuid.uuid4(), uuid.uuid4())
    response = await client.get(NOT_ME, params={"token": link})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert '<form method="post">' in response.text


# ---- HSTS ----------------------------------------------------------------------------------


async def test_hsts_is_sent_over_tls_and_never_over_plain_http(settings: Settings) -> None:
    async with running(settings, base_url="https://auth.example.com") as tls:
        over_tls = await tls.get("/api/v1/health")
        not_found = await tls.get("/nothing")
    async with running(settings) as plain:
        over_http = await plain.get("/api/v1/health")
        # An untrusted client cannot ask for it: X-Forwarded-Proto counts only from TRUSTED_PROXIES.
        spoofed = await plain.get("/api/v1/health", headers={"X-Forwarded-Proto": "https"})
    for response in (over_tls, not_found):
        assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in over_http.headers
    assert "strict-transport-security" not in spoofed.headers


async def test_hsts_can_be_turned_off(database_url: str, redis_url: str) -> None:
    settings = hardened_settings(database_url, redis_url, hsts_max_age=0)
    async with running(settings, base_url="https://auth.example.com") as tls:
        assert "strict-transport-security" not in (await tls.get("/api/v1/health")).headers


# ---- CORS ------------------------------------------------------------------------------------


async def test_an_evil_origin_is_never_reflected(client: AsyncTestClient[Any]) -> None:
    simple = await client.get("/api/v1/health", headers={"Origin": EVIL_ORIGIN})
    preflight = await client.options(
        LOGIN,
        headers={
            "Origin": EVIL_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert simple.status_code == 200
    assert preflight.status_code >= 400
    for response in (simple, preflight):
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
        assert EVIL_ORIGIN not in str(response.headers)


async def test_a_configured_origin_gets_exactly_what_the_api_needs(client: AsyncTestClient[Any]) -> None:
    preflight = await client.options(
        LOGIN,
        headers={
            "Origin": GOOD_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    simple = await client.get("/api/v1/health", headers={"Origin": GOOD_ORIGIN})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert set(preflight.headers["access-control-allow-methods"].replace(" ", "").split(",")) == {
        "GET",
        "POST",
        "OPTIONS",
    }
    assert "access-control-allow-credentials" not in preflight.headers
    assert simple.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    assert "Origin" in simple.headers["vary"]


async def test_without_configured_origins_cors_is_off(database_url: str, redis_url: str) -> None:
    async with running(hardened_settings(database_url, redis_url)) as plain:
        response = await plain.get("/api/v1/health", headers={"Origin": GOOD_ORIGIN})
    assert not [name for name in response.headers if name.startswith("access-control-")]


# ---- methods and media types -----------------------------------------------------------------

ROUTES = {
    LOGIN: {"POST"},
    REFRESH: {"POST"},
    LOGOUT: {"POST"},
    VERIFY: {"GET"},
    NOT_ME: {"GET", "POST"},
    "/api/v1/health": {"GET"},
    "/metrics": {"GET"},
    "/docs/openapi.json": {"GET"},
    "/docs-assets/swagger-ui.css": {"GET", "HEAD"},
}


def _allowed(response: Any) -> set[str]:
    return set(response.headers["allow"].replace(" ", "").split(","))


async def test_wrong_methods_are_405_in_the_envelope(client: AsyncTestClient[Any]) -> None:
    for path, methods in ROUTES.items():
        for method in {"TRACE", "PUT", "DELETE", "PATCH", "CONNECT", "GET", "POST"} - methods:
            response = await client.request(method, path)
            assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
            assert _allowed(response) == methods | {"OPTIONS"}, (method, path)


async def test_options_lists_every_method_of_the_route(client: AsyncTestClient[Any]) -> None:
    # Regression: Litestar's automatic OPTIONS listed only the first handler's methods (no GET on /not-me).
    for path, methods in ROUTES.items():
        response = await client.options(path)
        assert response.status_code == 204, path
        assert _allowed(response) == methods | {"OPTIONS"}, path


NON_JSON = [
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "multipart/form-data; boundary=x"},
    {"Content-Type": "application/xml"},
    {"Content-Type": "text/json"},
    {},  # a body without a Content-Type
]


async def test_non_json_bodies_are_415(client: AsyncTestClient[Any], alice: Any) -> None:
    auth = bearer((await login(client, "alice"))["access_token"])
    for path in (LOGIN, REFRESH, LOGOUT):
        for headers in NON_JSON:
            response = await client.post(path, content=b'{"refresh_token": "x"}', headers={**headers, **auth})
            assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    # None of it logged the user out.
    assert (await client.get(VERIFY, headers=auth)).status_code == 200


async def test_malformed_json_is_400(client: AsyncTestClient[Any]) -> None:
    for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"string"', b"{}" * 3):
        response = await client.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
        assert_envelope(response, 400, "VALIDATION_ERROR")


# ---- tokens in URLs --------------------------------------------------------------------------


async def test_an_access_token_in_the_query_string_never_authenticates(
    client: AsyncTestClient[Any], alice: Any
) -> None:
    token = (await login(client, "alice"))["access_token"]
    query_only = await client.get(VERIFY, params={"access_token": token})
    both = await client.get(VERIFY, params={"access_token": token}, headers=bearer(token))
    logout = await client.post(LOGOUT, params={"access_token": token}, headers=bearer(token))
    for response in (query_only, both, logout):
        assert_envelope(response, 401, "AUTH_TOKEN_INVALID")
        assert response.headers["www-authenticate"].startswith("Bearer")
    # The refused logout changed nothing: the header alone still works.
    assert (await client.get(VERIFY, headers=bearer(token))).status_code == 200


# ---- banners and docs ------------------------------------------------------------------------


async def test_no_framework_banner_in_any_header(client: AsyncTestClient[Any], alice: Any) -> None:
    responses = [
        await client.get("/api/v1/health"),
        await client.get("/nothing"),
        await client.request("TRACE", LOGIN),
        await client.post(LOGIN, json={"username": "alice", "password": DEFAULT_PASSWORD}),
        await client.get("/docs"),
    ]
    for response in responses:
        assert "server" not in response.headers
        assert "x-powered-by" not in response.headers
        assert "litestar" not in str(response.headers.raw).lower()


async def test_docs_are_off_in_production_by_default(database_url: str, redis_url: str) -> None:
    production = hardened_settings(database_url, redis_url, app_env="production")
    assert production.pages.docs_enabled is False
    async with running(production) as client:
        for path in ("/docs", "/docs/openapi.json", "/docs/swagger", "/docs-assets/swagger-ui.css", "/schema"):
            assert_envelope(await client.get(path), 404, "NOT_FOUND")


async def test_docs_can_be_turned_on_in_production_and_off_anywhere(database_url: str, redis_url: str) -> None:
    asked_for = hardened_settings(database_url, redis_url, app_env="production", docs_enabled="true")
    turned_off = hardened_settings(database_url, redis_url, app_env="development", docs_enabled="false")
    assert hardened_settings(database_url, redis_url, app_env="development").pages.docs_enabled is True
    async with running(asked_for) as client:
        assert (await client.get("/docs/openapi.json")).status_code == 200
    async with running(turned_off) as client:
        assert_envelope(await client.get("/docs/openapi.json"), 404, "NOT_FOUND")
