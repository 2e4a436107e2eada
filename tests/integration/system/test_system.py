"""Health, OpenAPI document and offline Swagger UI."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from tests.conftest import free_port, make_settings


async def test_health_ok_with_both_dependencies(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"] == {"database": "ok", "redis": "ok"}
    assert body["version"]


async def test_health_503_when_redis_is_down(database_url: str) -> None:
    settings = make_settings(database_url, f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"] == {"database": "ok", "redis": "unavailable"}


async def test_health_503_when_database_is_down(redis_url: str) -> None:
    settings = make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/x", redis_url)
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unavailable", "redis": "ok"}


async def test_openapi_declares_the_error_envelope_for_every_error(client: AsyncTestClient[Any]) -> None:
    doc = (await client.get("/docs/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/verify",
        "/api/v1/auth/not-me",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/api/v1/auth/register",
        "/api/v1/auth/verify-email",
        "/api/v1/auth/passkey/options",
        "/api/v1/auth/passkey",
        "/api/v1/users/me",
        "/api/v1/users/me/verify-email",
        "/api/v1/users/me/password",
        "/api/v1/users/me/sessions",
        "/api/v1/users/me/sessions/{session_id}",
        "/api/v1/users/me/logins",
        "/api/v1/users/me/passkeys/options",
        "/api/v1/users/me/passkeys",
        "/api/v1/users/me/passkeys/{passkey_id}",
        "/api/v1/auth/mfa",
        "/api/v1/auth/mfa/webauthn/options",
        "/api/v1/users/me/mfa/totp",
        "/api/v1/users/me/mfa/totp/confirm",
        "/api/v1/users/me/mfa/recovery-codes",
        "/api/v1/admin/users",
        "/api/v1/admin/users/{user_id}",
        "/api/v1/admin/users/{user_id}/logout",
        "/api/v1/admin/users/{user_id}/password-reset",
        "/api/v1/admin/users/{user_id}/mfa",
        "/api/v1/admin/login-records",
        "/api/v1/admin/audit-events",
        "/api/v1/admin/clients",
        "/api/v1/admin/clients/{client_id}",
        "/api/v1/admin/clients/{client_id}/secret",
        "/api/v1/health",
        "/metrics",
    }
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["properties"]["error"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            errors = {code: spec for code, spec in operation["responses"].items() if int(code) >= 400}
            assert "500" in errors, (path, method)
            for code, spec in errors.items():
                if (path, code) == ("/api/v1/health", "503"):
                    continue
                if path == "/api/v1/auth/not-me" and code in ("400", "403", "410"):
                    # The pages people reach from an e-mail link answer HTML, declared as such.
                    assert set(spec["content"]) == {"text/html"}, (path, method, code)
                    continue
                ref = spec["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorEnvelope"), (path, method, code)
    assert "ValidationException" not in str(doc)
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert {"400", "401", "413", "415", "429"} <= set(login["responses"])
    schema = doc["components"]["schemas"]["LoginRequest"]["properties"]["username"]
    assert schema["maxLength"] == 255


async def test_swagger_ui_is_served_without_internet(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "http://" not in page.text and "https://" not in page.text
    bundle = await client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert b'"5.' in bundle.content[:200_000]  # Swagger UI 5 renders OpenAPI 3.1
    assert (await client.get("/docs-assets/swagger-ui.css")).status_code == 200


async def test_database_down_answers_503_not_500(redis_url: str) -> None:
    token = "operator-token-1234567890"
    settings = make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/x", redis_url, metrics_token=token)
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert 'db_connection_errors_total{otel_scope_name="auth_service"' in metrics
    assert 'source="request"' in metrics


async def test_metrics_endpoint_is_for_loopback_or_the_token(database_url: str, redis_url: str) -> None:
    settings = make_settings(database_url, redis_url, metrics_token="operator-token-1234567890")
    async with AsyncTestClient(app=create_app(settings)) as client:
        # The in-process client is not a loopback peer: the token is required.
        denied = await client.get("/metrics")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "AUTH_TOKEN_INVALID"
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer operator-token-1234567890"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
        assert "http_server_request_duration_seconds_bucket" in ok.text
        assert "process_resident_memory_bytes" in ok.text
    no_token = make_settings(database_url, redis_url)
    async with AsyncTestClient(app=create_app(no_token)) as client:
        forbidden = await client.get("/metrics")
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "FORBIDDEN"


async def test_request_paths_never_become_metric_labels(database_url: str, redis_url: str) -> None:
    """Labels come from route templates or a fixed set: random paths add no series."""
    import uuid

    from prometheus_client import REGISTRY, generate_latest

    settings = make_settings(database_url, redis_url, rate_limit_public="5/minute")
    marks = [uuid.uuid4().hex for _ in range(200)]
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        for i, mark in enumerate(marks):
            path = f"/docs-assets/{mark}" if i % 2 else f"/{mark}/x"
            assert (await client.get(path)).status_code in (404, 429)
    exposition = generate_latest(REGISTRY).decode()
    assert not [mark for mark in marks if mark in exposition]
    # The registry is shared by the whole test process, so other tests' series are there too:
    # every label must be one of the app's own route templates or a fixed name.
    templates = {route.path for route in app.routes} | {route.path_format for route in app.routes}
    allowed = templates | {"unmatched", "login", "refresh", "verify", "logout", "email", "mfa"}
    endpoints = set(re.findall(r'^ratelimit_rejections_total\{[^}]*endpoint="([^"]*)"', exposition, re.MULTILINE))
    assert endpoints and endpoints <= allowed, endpoints - allowed
    assert (
        "/docs-assets/{file_path:path}" in endpoints
        or "/docs-assets/{file_path}" in endpoints
        or "unmatched" in endpoints
    )
