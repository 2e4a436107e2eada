"""The verify fast path (server/dispatch.py) answers exactly like the Litestar route it
stands in front of: same status, body and headers for every kind of request, and it is the
one that answers unless CORS needs Litestar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auth_service.app import AuthApp, create_app
from auth_service.server.dispatch import FastVerify
from auth_service.settings import Settings
from db.models import User
from observability.setup import init_telemetry
from tests.conftest import make_settings
from tests.integration.conftest import login

VERIFY = "/api/v1/auth/verify"
ORIGIN = "https://app.example.com"


class Counting:
    """The app's fast path, counting the requests it answered."""

    def __init__(self, fast: FastVerify) -> None:
        self.fast = fast
        self.served = 0

    def takes(self, scope: Scope) -> bool:
        return self.fast.takes(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.served += 1
        await self.fast(scope, receive, send)


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[AuthApp, AsyncTestClient[Any]]]:
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        yield app, client


def _seen(response: Any) -> tuple[int, Any, dict[str, str]]:
    """What a client sees, minus what differs on every request (date, request id, timestamps,
    the limit's remaining count and reset: both requests spend from the same limit)."""
    body = response.json()
    if "error" in body:
        assert body["error"].pop("request_id") == response.headers["x-request-id"]
        body["error"].pop("timestamp")
    varying = ("date", "x-request-id", "x-ratelimit-reset", "x-ratelimit-remaining", "retry-after")
    headers = {k: "…" if k in varying else v for k, v in response.headers.items()}
    return response.status_code, body, headers


async def _both(app: AuthApp, client: AsyncTestClient[Any], **request: Any) -> tuple[Any, Any]:
    """The same request through the fast path, then through Litestar's route."""
    fast = app.fast_verify
    assert fast is not None
    counting = Counting(fast)
    app.fast_verify = counting  # type: ignore[assignment]
    try:
        through_fast = await client.get(VERIFY, **request)
        assert counting.served == 1
        app.fast_verify = None
        through_litestar = await client.get(VERIFY, **request)
    finally:
        app.fast_verify = fast
    return through_fast, through_litestar


async def test_fast_path_and_litestar_route_answer_alike(
    app_client: tuple[AuthApp, AsyncTestClient[Any]], alice: User
) -> None:
    app, client = app_client
    tokens = await login(client)
    access = tokens["access_token"]
    cases: dict[str, dict[str, Any]] = {
        "valid": {"headers": {"Authorization": f"Bearer {access}"}},
        "scheme in lower case": {"headers": {"Authorization": f"bearer {access}"}},
        "no header": {},
        "not bearer": {"headers": {"Authorization": f"Basic {access}"}},
        "garbage": {"headers": {"Authorization": "Bearer not.a.token"}},
        "tampered": {"headers": {"Authorization": f"Bearer {access[:-2]}xx"}},
        "token in the query": {"headers": {"Authorization": f"Bearer {access}"}, "params": {"access_token": access}},
        "caller's request id": {"headers": {"Authorization": f"Bearer {access}", "X-Request-ID": "abc-123"}},
    }
    for name, request in cases.items():
        fast, slow = await _both(app, client, **request)
        assert _seen(fast) == _seen(slow), name
        if name == "caller's request id":
            assert fast.headers["x-request-id"] == slow.headers["x-request-id"] == "abc-123"
    valid, _ = await _both(app, client, **cases["valid"])
    assert valid.status_code == 200 and valid.json()["username"] == "alice"
    assert valid.headers["content-type"] == "application/json; charset=utf-8"
    assert valid.headers["x-content-type-options"] == "nosniff"
    assert "x-ratelimit-remaining" in valid.headers

    response = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 204
    fast, slow = await _both(app, client, **cases["valid"])
    assert fast.status_code == 401 and fast.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    assert _seen(fast) == _seen(slow)


async def test_fast_path_refuses_over_the_limit_like_litestar(database_url: str, redis_url: str, alice: User) -> None:
    app = create_app(make_settings(database_url, redis_url, rate_limit_verify="3/minute"))
    async with AsyncTestClient(app=app) as client:
        access = (await login(client))["access_token"]
        headers = {"Authorization": f"Bearer {access}"}
        for _ in range(3):
            assert (await client.get(VERIFY, headers=headers)).status_code == 200
        fast, slow = await _both(app, client, headers=headers)
    assert fast.status_code == 429 and fast.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(fast.headers["retry-after"]) >= 1
    assert _seen(fast) == _seen(slow)


async def test_litestar_answers_what_the_fast_path_leaves(database_url: str, redis_url: str, alice: User) -> None:
    app = create_app(make_settings(database_url, redis_url, cors_origins=ORIGIN))
    fast = app.fast_verify
    assert fast is not None
    counting = Counting(fast)
    app.fast_verify = counting  # type: ignore[assignment]
    async with AsyncTestClient(app=app) as client:
        headers = {"Authorization": f"Bearer {(await login(client))['access_token']}"}
        cors = await client.get(VERIFY, headers={**headers, "Origin": ORIGIN})
        assert cors.status_code == 200 and cors.headers["access-control-allow-origin"] == ORIGIN
        for method in ("POST", "HEAD", "PUT"):
            assert (await client.request(method, VERIFY, headers=headers)).status_code == 405, method
        assert counting.served == 0
        assert (await client.get(VERIFY, headers=headers)).status_code == 200
        assert counting.served == 1


async def test_server_span_continues_the_callers_trace(
    app_client: tuple[AuthApp, AsyncTestClient[Any]], alice: User
) -> None:
    telemetry = init_telemetry(service_name="auth-service-api", version="test", environment="test")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.tracer_provider.add_span_processor(processor)
    try:
        _, client = app_client
        access = (await login(client))["access_token"]
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            carrier: dict[str, str] = {}
            inject(carrier)
        for path, headers in (
            (VERIFY, {"Authorization": f"Bearer {access}", **carrier}),  # the fast path
            ("/api/v1/health", carrier),  # a Litestar route
        ):
            assert (await client.get(path, headers=headers)).status_code == 200
            (server,) = [s for s in exporter.get_finished_spans() if s.name == f"GET {path}"]
            assert server.kind == trace.SpanKind.SERVER
            assert server.context.trace_id == caller.get_span_context().trace_id
            assert server.parent is not None and server.parent.span_id == caller.get_span_context().span_id
            assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
        # Without a traceparent, the verify span is a root kept at TRACE_VERIFY_SAMPLE_RATIO; health's always.
        exporter.clear()
        assert (await client.get("/api/v1/health")).status_code == 200
        (root,) = [s for s in exporter.get_finished_spans() if s.name == "GET /api/v1/health"]
        assert root.parent is None
    finally:
        processor.shutdown()
