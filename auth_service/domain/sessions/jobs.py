"""Periodic housekeeping."""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import delete, or_, select

from auth_service.domain.notifications.context import JobContext
from auth_service.domain.sessions.repository import RefreshTokenRepository, TokenBlacklistRepository
from db.sql import user_tokens

__all__ = ["cleanup_expired_tokens"]

log = structlog.get_logger()

BATCH_SIZE = 1000
# Revoked refresh tokens are kept a while so reuse of one still reads as "revoked", not "unknown".
REVOKED_RETENTION = dt.timedelta(days=1)


async def cleanup_expired_tokens(ctx: JobContext) -> dict[str, int]:
    """Delete expired blacklist entries, expired or long-revoked refresh tokens, and account links
    (reset, verification, invitation) that are expired or used, in batches. A deleted link answers
    LINK_INVALID like an expired or used one, so nothing a client sees changes.

    Idempotent: a second run finds nothing left to delete.
    """
    now = dt.datetime.now(dt.UTC)
    totals = {"blacklist": 0, "refresh_tokens": 0, "user_tokens": 0}
    session_factory = ctx["session_factory"]
    while True:
        async with session_factory() as session:
            deleted = await TokenBlacklistRepository(session=session).delete_expired(now, BATCH_SIZE)
            await session.commit()
        totals["blacklist"] += deleted
        if deleted < BATCH_SIZE:
            break
    while True:
        async with session_factory() as session:
            repo = RefreshTokenRepository(session=session)
            deleted = await repo.delete_expired(now, now - REVOKED_RETENTION, BATCH_SIZE)
            await session.commit()
        totals["refresh_tokens"] += deleted
        if deleted < BATCH_SIZE:
            break
    t = user_tokens.c
    while True:
        async with session_factory() as session:
            doomed = select(t.id).where(or_(t.expires_at <= now, t.used_at.is_not(None))).limit(BATCH_SIZE)
            result = await session.execute(delete(user_tokens).where(t.id.in_(doomed.scalar_subquery())))
            await session.commit()
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        totals["user_tokens"] += deleted
        if deleted < BATCH_SIZE:
            break
    log.info("job.cleanup_expired_tokens.done", **totals)
    return totals
