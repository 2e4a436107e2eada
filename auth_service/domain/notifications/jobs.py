"""Login notification and suspicious-login alert: delivered once, retried when SMTP is down.

Each message belongs to an outbox row (notifications). A run claims the row for the job
timeout, sends, and marks it sent; a retried or duplicated job finds it sent (or claimed)
and does nothing. A worker killed mid-send leaves a claim that expires, so the rerun sends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from arq import Retry
from sqlalchemy.exc import DBAPIError

from auth_service.domain.notifications.context import JobContext
from auth_service.domain.notifications.mailer import PermanentMailError, TransientMailError
from auth_service.domain.notifications.messages import Rendered, build_message, login_notification, suspicious_alert
from auth_service.domain.notifications.repository import NotificationRepository
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.urls import PublicUrls
from db.models import Notification, User

__all__ = ["backoff", "send_login_notification_email", "send_suspicious_login_alert"]

log = structlog.get_logger()


def backoff(job_try: int) -> int:
    """Exponential: 5, 10, 20, 40 … seconds, at most 5 minutes."""
    return int(min(300, 5 * 2 ** max(0, job_try - 1)))


def _link(ctx: JobContext, notification_id: uuid.UUID, user_id: uuid.UUID) -> str:
    signer: LinkSigner = ctx["links"]
    return PublicUrls(ctx["settings"].pages.public_base_url).not_me(signer.sign(notification_id, user_id))


async def _deliver(
    ctx: JobContext,
    *,
    kind: str,
    job: str,
    user_id: str,
    payload: dict[str, Any],
    details: dict[str, Any],
    notification_id: str | None,
    render: Callable[[str, dict[str, Any], str], Rendered],
) -> str:
    now = dt.datetime.now(dt.UTC)
    lease = dt.timedelta(seconds=ctx["settings"].worker_job_timeout)
    try:
        async with ctx["session_factory"]() as session:
            notes = NotificationRepository(session=session)
            user = await session.get(User, uuid.UUID(user_id))
            if notification_id is None:  # called directly (Celery, a shell): give it an outbox row
                row = Notification(id=uuid.uuid4(), kind=kind, job=job, user_id=uuid.UUID(user_id), payload=payload)
                await notes.add(row, auto_refresh=False)
                notification_id = str(row.id)
            note_id = uuid.UUID(notification_id)
            if user is None or not user.is_active:
                await notes.finish(note_id, now, sent=False, error="permanent: user gone or disabled")
                await session.commit()
                log.info("email.dropped", kind=kind, notification_id=notification_id, reason="user gone or disabled")
                return "dropped"
            if await notes.claim(note_id, now, lease) is None:
                await session.commit()
                log.info("email.skipped", kind=kind, notification_id=notification_id, reason="sent or in progress")
                return "skipped"
            await session.commit()
            message = build_message(
                render(user.username, details, _link(ctx, note_id, user.id)),
                sender=ctx["settings"].email_from,
                to=[user.email],
                message_id=f"{kind}-{notification_id}",
            )
            try:
                await ctx["mailer"].send(message)
            except TransientMailError as exc:
                await notes.finish(note_id, dt.datetime.now(dt.UTC), sent=False, error=f"transient: {exc}")
                await session.commit()
                log.warning("email.deferred", kind=kind, notification_id=notification_id, error=str(exc))
                raise Retry(defer=backoff(ctx.get("job_try", 1))) from exc
            except PermanentMailError as exc:
                await notes.finish(note_id, dt.datetime.now(dt.UTC), sent=False, error=f"permanent: {exc}")
                await session.commit()
                log.error("email.undeliverable", kind=kind, notification_id=notification_id, error=str(exc))
                return "dropped"
            await notes.finish(note_id, dt.datetime.now(dt.UTC), sent=True)
            await session.commit()
    except (DBAPIError, OSError) as exc:  # database down: the claim (if any) expires; try again later
        log.warning("email.database_unavailable", kind=kind, error=type(exc).__name__)
        raise Retry(defer=backoff(ctx.get("job_try", 1))) from exc
    log.info("email.sent", kind=kind, notification_id=notification_id, user_id=user_id)
    return "sent"


async def send_login_notification_email(
    ctx: JobContext,
    user_id: str,
    ip_address: str,
    timestamp: str,
    user_agent: str | None = None,
    notification_id: str | None = None,
) -> str:
    """Tell the user about a successful login (after each one)."""
    details = {"ip_address": ip_address, "timestamp": timestamp, "user_agent": user_agent}
    return await _deliver(
        ctx,
        kind="login",
        job="send_login_notification_email",
        user_id=user_id,
        payload={"user_id": user_id, **details},
        details=details,
        notification_id=notification_id,
        render=login_notification,
    )


async def send_suspicious_login_alert(
    ctx: JobContext, user_id: str, details: dict[str, Any], notification_id: str | None = None
) -> str:
    """Warn the user about a suspicious login (new device, or after repeated failures)."""
    return await _deliver(
        ctx,
        kind="suspicious",
        job="send_suspicious_login_alert",
        user_id=user_id,
        payload={"user_id": user_id, "details": details},
        details=details,
        notification_id=notification_id,
        render=suspicious_alert,
    )
