"""The daily login report, e-mailed to every active admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from arq import Retry

from auth_service.domain.auth.repository import LoginRecordRepository
from auth_service.domain.notifications.context import JobContext
from auth_service.domain.notifications.jobs import backoff
from auth_service.domain.notifications.mailer import PermanentMailError, TransientMailError
from auth_service.domain.notifications.messages import build_message, daily_report
from auth_service.domain.users.repository import UserRepository

__all__ = ["generate_daily_login_report", "login_stats"]

log = structlog.get_logger()


async def login_stats(session: Any, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    records = LoginRecordRepository(session=session)
    attempts, successes, unique_users = await records.day_totals(start, end)
    return {
        "attempts": attempts,
        "successes": successes,
        "failures": attempts - successes,
        "success_rate": successes / attempts if attempts else 0.0,
        "unique_users": unique_users,
        "top_failing_ips": await records.top_failing("ip_address", start, end),
        "top_failing_usernames": await records.top_failing("username", start, end),
    }


async def generate_daily_login_report(ctx: JobContext, day: str | None = None) -> dict[str, Any]:
    """Totals, success rate, unique users and top failing IPs and usernames of one UTC day
    (default: yesterday), sent as one message to every active admin."""
    if day is None:
        day = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    async with ctx["session_factory"]() as session:
        stats = await login_stats(session, start, end)
        admins = await UserRepository(session=session).active_admin_emails()
    if admins:
        message = build_message(
            daily_report(day, stats), sender=ctx["settings"].mail.sender, to=admins, message_id=f"report-{day}"
        )
        try:
            await ctx["mailer"].send(message)
        except TransientMailError as exc:
            raise Retry(defer=backoff(ctx.get("job_try", 1))) from exc
        except PermanentMailError as exc:
            log.error("report.undeliverable", day=day, error=str(exc))
    log.info("report.sent", day=day, recipients=len(admins), attempts=stats["attempts"])
    return {"day": day, "recipients": len(admins), **stats}
