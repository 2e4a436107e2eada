"""Shared pieces of the web-hardening, enumeration and log suites: the real app in process on
the test database, a logged-in user, and the envelope assertion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.settings import Settings
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD

__all__ = ["GENEROUS_LIMITS", "assert_envelope", "hardened_settings", "login", "running"]

LOGIN = "/api/v1/auth/login"
# Limits far above what a suite sends, so it measures the endpoint and not the limiter.
GENEROUS_LIMITS = {
    "rate_limit_login": "1000000/minute",
    "rate_limit_login_failures": "1000000/minute",
    "rate_limit_refresh": "1000000/minute",
    "rate_limit_api": "1000000/minute",
    "rate_limit_public": "1000000/minute",
}


def hardened_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, redis_url, **{**GENEROUS_LIMITS, **overrides})


@asynccontextmanager
async def running(
    settings: Settings, base_url: str = "http://testserver.local", app: Litestar | None = None
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=app or create_app(settings), base_url=base_url) as client:
        yield client


async def login(
    client: AsyncTestClient[Any] | httpx.AsyncClient, username: str, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    response = await client.post(LOGIN, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error envelope, with the request id echoed, and nothing else in the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, error
    assert {"code", "message", "timestamp", "request_id"} <= set(error) <= {*error, "details"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return error
