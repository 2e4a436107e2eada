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
from auth_service.domain.notifications.mailer import PermanentMailError, TransientMailError, one_mailbox
from auth_service.domain.notifications.messages import (
    ACCOUNT_MESSAGES,
    Rendered,
    build_message,
    login_notification,
    suspicious_alert,
)
from auth_service.domain.notifications.repository import NotificationRepository
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.urls import PublicUrls
from db.models import Notification, User, owns_its_address

__all__ = ["backoff", "send_account_email", "send_login_notification_email", "send_suspicious_login_alert"]

log = structlog.get_logger()


def backoff(job_try: int) -> int:
    """Exponential: 5, 10, 20, 40 … seconds, at most 5 minutes."""
    return int(min(300, 5 * 2 ** max(0, job_try - 1)))


def _not_me_link(ctx: JobContext) -> Callable[[uuid.UUID, User], str]:
    signer: LinkSigner = ctx["links"]
    urls = PublicUrls(ctx["settings"].app.base_url)
    return lambda notification_id, user: urls.not_me(signer.sign(notification_id, user.id))


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
    link: Callable[[uuid.UUID, User], str] | None = None,
    to: str | None = None,
) -> str:
    now = dt.datetime.now(dt.UTC)
    lease = dt.timedelta(seconds=ctx["settings"].jobs.timeout)
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
            # Exactly one mailbox, the one stored: a value that parses into several (rows written
            # before addresses were checked as stored) is never sent to; nor is an address the
            # account does not own (a sign-up with another account's address).
            recipient = one_mailbox(to) if to else one_mailbox(user.email) if owns_its_address(user.email_key) else None
            if recipient is None:
                await notes.finish(note_id, now, sent=False, error="permanent: not one mailbox of the account")
                await session.commit()
                log.warning("email.dropped", kind=kind, notification_id=notification_id, reason="not one mailbox")
                return "dropped"
            if await notes.claim(note_id, now, lease) is None:
                await session.commit()
                log.info("email.skipped", kind=kind, notification_id=notification_id, reason="sent or in progress")
                return "skipped"
            await session.commit()
            message = build_message(
                render(user.username, details, (link or _not_me_link(ctx))(note_id, user)),
                sender=ctx["settings"].mail.sender,
                to=[recipient],
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


async def send_account_email(
    ctx: JobContext,
    user_id: str,
    kind: str,
    details: dict[str, Any] | None = None,
    token_id: str | None = None,
    notification_id: str | None = None,
) -> str:
    """An account mail (password reset link, password changed). A link's token is rebuilt from
    its id (lib/crypto/account_links.py): the outbox never holds a raw token."""
    details = details or {}
    render = ACCOUNT_MESSAGES.get(kind)
    if render is None:
        log.error("email.unknown_kind", kind=kind, notification_id=notification_id)
        return "dropped"
    urls = PublicUrls(ctx["settings"].app.base_url)
    account_links: AccountLinks = ctx["account_links"]

    def action(_: uuid.UUID, __: User) -> str:
        if kind in ("password_reset", "invitation") and token_id:
            return urls.reset_password(account_links.token(uuid.UUID(token_id), "reset"))
        if kind == "verify_email" and token_id:
            return urls.verify_email(account_links.token(uuid.UUID(token_id), "verify"))
        return urls.reset_password()

    return await _deliver(
        ctx,
        kind=kind,
        job="send_account_email",
        user_id=user_id,
        payload={"user_id": user_id, "kind": kind, "details": details, "token_id": token_id},
        details=details,
        notification_id=notification_id,
        render=render,
        link=action,
        # A link's mail goes to the address the link was made for (and is valid for), not to the
        # account's address at sending time; the e-mail-changed notice goes to the old address.
        to=details.get("to"),
    )
