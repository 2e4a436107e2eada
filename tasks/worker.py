"""arq WorkerSettings: the job functions, schedules, limits and shared resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from auth_service.domain.auth.jobs import generate_daily_login_report
from auth_service.domain.notifications.jobs import (
    send_account_email,
    send_login_notification_email,
    send_suspicious_login_alert,
)
from auth_service.domain.notifications.mailer import CircuitBreaker, ConsoleMailer, FileMailer, Mailer, SmtpMailer
from auth_service.domain.notifications.outbox import dispatch_outbox
from auth_service.domain.sessions.jobs import cleanup_expired_tokens
from auth_service.lib.queue import JobName
from auth_service.settings import Settings, get_settings
from auth_service.wiring import account_links_for, job_queue_for, link_signer_for
from db.config import engine_options, ping_on_checkout
from observability.metrics import start_job_counters
from observability.tracing import instrument_engine
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


def make_mailer(settings: Settings) -> Mailer:
    """The EMAIL_BACKEND, with SMTP behind the circuit breaker."""
    mail = settings.mail
    if mail.backend == "smtp":
        smtp = SmtpMailer(
            host=mail.smtp_host,
            port=mail.smtp_port,
            username=mail.smtp_username,
            password=mail.smtp_password,
            starttls=mail.smtp_starttls,
            tls=mail.smtp_tls,
            timeout=mail.smtp_timeout,
        )
        return CircuitBreaker(smtp, failures=mail.breaker_failures, reset_seconds=mail.breaker_reset_seconds)
    if mail.backend == "console":
        return ConsoleMailer()
    return FileMailer(mail.outbox_dir)


async def prepare(ctx: dict[str, Any], settings: Settings) -> None:
    """Fill a job context (arq's, or the Celery adapter's) with what the jobs use."""
    engine = create_async_engine(
        settings.database.url,
        **engine_options(
            pool_size=4,
            max_overflow=4,
            pool_timeout=settings.database.pool_timeout,
            connect_timeout=settings.database.connect_timeout,
            # Jobs (the daily report, cleanups) may scan: their statements get the job's own budget.
            statement_timeout=float(settings.jobs.timeout),
        ),
    )
    ping_on_checkout(engine)
    instrument_engine(engine)
    ctx["settings"] = settings
    ctx["engine"] = engine
    ctx["session_factory"] = async_sessionmaker(engine, expire_on_commit=False)
    ctx["mailer"] = make_mailer(settings)
    ctx["links"] = link_signer_for(settings)
    ctx["account_links"] = account_links_for(settings)
    ctx["queue"] = job_queue_for(settings)


async def release(ctx: dict[str, Any]) -> None:
    """Undo `prepare`."""
    await ctx["queue"].close()
    await ctx["engine"].dispose()


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
