"""Health of the service and its dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from importlib.metadata import version
from typing import Annotated, Any, Literal

import msgspec
import structlog
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from prometheus_client import REGISTRY, generate_latest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.domain.system.gauges import redis_check
from auth_service.lib.errors import Forbidden, TokenInvalid
from auth_service.lib.http import error_responses
from auth_service.settings import Settings
from observability import metrics

__all__ = ["HealthController", "HealthResponse", "metrics_endpoint"]

log = structlog.get_logger()

CHECK_TIMEOUT = 2.0
CheckStatus = Literal["ok", "unavailable"]


class HealthChecks(msgspec.Struct):
    database: CheckStatus
    redis: Annotated[
        str,
        msgspec.Meta(description='"ok", "unavailable", or "degraded: eviction policy …" when Redis may evict keys'),
    ]


class HealthResponse(msgspec.Struct):
    status: Annotated[
        Literal["ok", "degraded", "unavailable"],
        msgspec.Meta(description="unavailable (503) when a dependency is down; degraded (200) when one is at risk"),
    ]
    checks: HealthChecks
    version: str


async def _check_database(engine: AsyncEngine) -> CheckStatus:
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the type goes to the log
        metrics.db_connection_errors.add(1, {"source": "health"})
        log.warning("health.database_unavailable", error=type(exc).__name__)
        return "unavailable"
    return "ok"


async def _check_redis(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT)
    except Exception as exc:
        log.warning("health.redis_unavailable", error=type(exc).__name__)
        return redis_check(False)
    return redis_check(True)


class HealthController(Controller):
    path = "/api/v1"
    tags = ["system"]

    @get(
        "/health",
        summary="Service health",
        description="200 when PostgreSQL and Redis answer; 503 with the same shape when one does not.",
        responses={
            503: ResponseSpec(data_container=HealthResponse, description="A dependency is down"),
            **error_responses(429),
        },
    )
    async def health(
        self, redis: NamedDependency[Redis], db_engine: NamedDependency[AsyncEngine]
    ) -> Response[HealthResponse]:
        database, redis_status = await asyncio.gather(_check_database(db_engine), _check_redis(redis))
        healthy = database == "ok" and redis_status != "unavailable"
        body = HealthResponse(
            status=("ok" if redis_status == "ok" else "degraded") if healthy else "unavailable",
            checks=HealthChecks(database=database, redis=redis_status),
            version=version("auth-service"),
        )
        return Response(body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"})


# Any of these says the loopback peer is a proxy relaying someone else.
PROXY_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host", "x-forwarded-proto", "via")


def _metrics_allowed(request: Request[Any, Any, Any], token: str) -> bool:
    """Loopback peers that are not relaying someone else (no proxy header), or the operator token."""
    peer = request.client.host if request.client else ""
    with contextlib.suppress(ValueError):
        relayed = any(name in request.headers for name in PROXY_HEADERS)
        if ipaddress.ip_address(peer).is_loopback and not relayed:
            return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return (
        bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
    )


@get(
    "/metrics",
    summary="Prometheus metrics",
    description="The service's OpenTelemetry metrics in Prometheus text format. Open to loopback clients; "
    "others need `Authorization: Bearer $METRICS_TOKEN`.",
    tags=["system"],
    opt={"rate_limit": "none"},
    media_type="text/plain; version=0.0.4; charset=utf-8",
    responses=error_responses(401, 403),
    sync_to_thread=False,
)
def metrics_endpoint(request: Request[Any, Any, Any], settings: NamedDependency[Settings]) -> bytes:
    token = settings.telemetry.metrics_token
    if not _metrics_allowed(request, token):
        raise TokenInvalid if token else Forbidden("Metrics are served to loopback clients or with METRICS_TOKEN")
    return generate_latest(REGISTRY)
