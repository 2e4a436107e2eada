"""What the user is told, and the audit log keeps, when a second factor changes or is used: one
account mail kind (`mfa_changed`, its `event` says what) through the outbox, and the contract's
`mfa.*` audit actions, both in the transaction of the change. Never a secret, code or hash."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.mfa.store import FactorStore
from auth_service.domain.users.recovery import write_mail
from auth_service.lib.audit import Actor, AuditEntry, record

__all__ = ["LOW_CODES", "factor_changed", "recovery_code_used"]

LOW_CODES = 2  # at most this many recovery codes left: the mail says so, and how to get new ones


def _stamp() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"


async def factor_changed(
    session: AsyncSession,
    actor: Actor,
    user_id: uuid.UUID,
    action: str,
    event: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit `action` and mail the owner about `event`, in the caller's transaction."""
    await record(session, actor, AuditEntry(action, user_id, details or {}))
    await write_mail(session, user_id, "mfa_changed", {"event": event, "timestamp": _stamp(), **(details or {})})


async def recovery_code_used(session: AsyncSession, store: FactorStore, user_id: uuid.UUID, ip: str) -> None:
    """A recovery code finished a login: audited, mailed (saying so when few are left); commits."""
    left = await store.codes_left(user_id)
    actor = Actor(user_id, ip)
    await factor_changed(session, actor, user_id, "mfa.recovery.use", "recovery_used", {"remaining": left})
    await session.commit()
