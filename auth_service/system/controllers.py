"""Health of the service and its dependencies."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Literal

import msgspec
import structlog
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.openapi import error_responses
from auth_service.resources import Resources

__all__ = ["HealthController", "HealthResponse"]

log = structlog.get_logger()

CHECK_TIMEOUT = 2.0
CheckStatus = Literal["ok", "unavailable"]


class HealthChecks(msgspec.Struct):
    database: CheckStatus
    redis: CheckStatus


class HealthResponse(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    checks: HealthChecks
    version: str


async def _check_database(engine: AsyncEngine) -> CheckStatus:
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the type goes to the log
        log.warning("health.database_unavailable", error=type(exc).__name__)
        return "unavailable"
    return "ok"


async def _check_redis(resources: Resources) -> CheckStatus:
    try:
        await asyncio.wait_for(resources.redis.ping(), CHECK_TIMEOUT)
    except Exception as exc:
        log.warning("health.redis_unavailable", error=type(exc).__name__)
        return "unavailable"
    return "ok"


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
    async def health(self, state: State, db_engine: NamedDependency[AsyncEngine]) -> Response[HealthResponse]:
        database, redis = await asyncio.gather(_check_database(db_engine), _check_redis(state.resources))
        healthy = database == "ok" and redis == "ok"
        body = HealthResponse(
            status="ok" if healthy else "unavailable",
            checks=HealthChecks(database=database, redis=redis),
            version=version("auth-service"),
        )
        return Response(body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"})
