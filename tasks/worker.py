"""arq WorkerSettings: the job functions, schedules, limits and shared resources."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from auth_service.config import get_settings
from auth_service.jobs import JobName
from observability.tracing import instrument_engine
from tasks.instrument import instrumented
from tasks.jobs.maintenance import cleanup_expired_tokens

__all__ = ["FUNCTIONS", "WorkerSettings", "redis_settings"]

FUNCTIONS = {JobName.CLEANUP_EXPIRED_TOKENS: instrumented(cleanup_expired_tokens)}


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    engine = create_async_engine(settings.async_database_url, pool_size=4, pool_pre_ping=True)
    instrument_engine(engine)
    ctx["engine"] = engine
    ctx["session_factory"] = async_sessionmaker(engine, expire_on_commit=False)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def redis_settings() -> RedisSettings:
    """Read at worker start (not import), so REDIS_URL set by the launcher counts."""
    return RedisSettings.from_dsn(get_settings().redis_url)


class WorkerSettings:
    functions = list(FUNCTIONS.values())
    cron_jobs = [cron(FUNCTIONS[JobName.CLEANUP_EXPIRED_TOKENS], minute=7, unique=True, run_at_startup=False)]  # type: ignore[arg-type]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 4
    job_timeout = 300
    max_tries = 5
    health_check_interval = 60
