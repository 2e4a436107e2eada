"""arq WorkerSettings: the job functions, schedules, limits and shared resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import cron
from arq.connections import RedisSettings

from auth_service.container import RESOURCE_NAMES, Resources
from auth_service.domain.auth.jobs import generate_daily_login_report
from auth_service.domain.notifications.context import JobContext
from auth_service.domain.notifications.jobs import (
    send_account_email,
    send_login_notification_email,
    send_suspicious_login_alert,
)
from auth_service.domain.notifications.outbox import dispatch_outbox
from auth_service.domain.sessions.jobs import cleanup_expired_tokens
from auth_service.lib.queue import JobName
from auth_service.settings import Settings, get_settings
from observability.metrics import start_job_counters
from tasks.instrument import instrumented

__all__ = ["FUNCTIONS", "WorkerSettings", "job_context", "prepare", "redis_settings", "release"]

FUNCTIONS = {
    JobName.SEND_LOGIN_NOTIFICATION_EMAIL: instrumented(send_login_notification_email),
    JobName.SEND_SUSPICIOUS_LOGIN_ALERT: instrumented(send_suspicious_login_alert),
    JobName.SEND_ACCOUNT_EMAIL: instrumented(send_account_email),
    JobName.CLEANUP_EXPIRED_TOKENS: instrumented(cleanup_expired_tokens),
    JobName.GENERATE_DAILY_LOGIN_REPORT: instrumented(generate_daily_login_report),
    JobName.DISPATCH_OUTBOX: instrumented(dispatch_outbox),
}


async def prepare(ctx: dict[str, Any], settings: Settings) -> None:
    """Fill a job context (arq's, or the Celery adapter's) from the container: the objects the
    jobs use (JobContext's keys), built on first use."""
    resources = Resources(settings)
    ctx["resources"] = resources
    for name in JobContext.__annotations__:
        if name in RESOURCE_NAMES or name == "settings":
            ctx[name] = getattr(resources, name)


async def release(ctx: dict[str, Any]) -> None:
    """Undo `prepare`."""
    await ctx["resources"].close()


@asynccontextmanager
async def job_context(settings: Settings, **extra: Any) -> AsyncIterator[dict[str, Any]]:
    """A prepared job context for one-off runs (the Celery adapter, tests, a shell)."""
    ctx: dict[str, Any] = dict(extra)
    await prepare(ctx, settings)
    try:
        yield ctx
    finally:
        await release(ctx)


async def startup(ctx: dict[str, Any]) -> None:
    # Every task's runs at 0 for each outcome: the jobs panel reads 0 before the first run.
    start_job_counters(job.__name__ for job in FUNCTIONS.values())
    await prepare(ctx, get_settings())


async def shutdown(ctx: dict[str, Any]) -> None:
    await release(ctx)


def redis_settings() -> RedisSettings:
    """Read at worker start (not import), so REDIS_URL set by the launcher counts."""
    return RedisSettings.from_dsn(get_settings().redis.queue_url)


class WorkerSettings:
    functions = list(FUNCTIONS.values())
    # unique=True: with several workers, each period's run happens once.
    cron_jobs = [
        cron(FUNCTIONS[JobName.CLEANUP_EXPIRED_TOKENS], minute=7, unique=True),  # type: ignore[arg-type]
        cron(FUNCTIONS[JobName.GENERATE_DAILY_LOGIN_REPORT], hour=0, minute=5, unique=True),  # type: ignore[arg-type]
        cron(FUNCTIONS[JobName.DISPATCH_OUTBOX], second=30, unique=True),  # type: ignore[arg-type]
    ]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 4
    job_timeout = 300  # WORKER_JOB_TIMEOUT overrides (python -m tasks)
    max_tries = 5
    health_check_interval = 60
