"""The bare endpoint inside the service's own per-request stack, for splitting verify's cost:
request id, server span and HTTP metrics (RequestContextMiddleware), the response headers
(request id, nosniff, charset, HSTS) and the error-envelope handlers — no token, no Redis."""

from __future__ import annotations

import os
import secrets

from litestar import Litestar, get

from auth_service.server.exception_handlers import exception_handlers
from auth_service.server.hardening import response_hardening
from auth_service.server.request_context import RequestContextMiddleware, add_response_headers
from auth_service.settings import load_settings
from observability.setup import init_telemetry


@get("/json")
async def small_json() -> dict[str, object]:
    return {"valid": True, "user_id": "00000000-0000-0000-0000-000000000000", "roles": ["user"]}


_settings = load_settings(
    env={
        **os.environ,
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": "postgresql://unused@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1:9/0",
    },
    env_file=None,
)
# Sampled like verify (1 %), so the comparison is like for like.
init_telemetry(service_name="auth-service-bench", version="0", environment="bench", hot_spans={"GET /json": 0.01})
app = Litestar(
    [small_json],
    middleware=[RequestContextMiddleware],
    before_send=[add_response_headers, response_hardening(_settings)],
    exception_handlers=exception_handlers,
    logging_config=None,
)
