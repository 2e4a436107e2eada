"""The account's own views: who I am, my sessions, my logins (read-only queries)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.mfa.store import FactorStore
from auth_service.domain.users.schemas import MeRead, MfaState
from auth_service.lib.pagination import decode_cursor, encode_cursor
from db.sql import login_records, refresh_tokens, users

__all__ = ["Account", "LoginPage", "LoginRead", "SessionRead"]


class SessionRead(msgspec.Struct):
    id: str
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    ip_address: str | None
    user_agent: str | None
    current: bool


class LoginRead(msgspec.Struct):
    at: dt.datetime
    ip_address: str
    user_agent: str | None
    success: bool
    failure_reason: str | None


class LoginPage(msgspec.Struct):
    items: list[LoginRead]
    next_cursor: str | None


class Account:
    """Reads of one user's own account; each is one statement."""

    def __init__(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        self._session = session
        self._user_id = user_id

    async def me(self) -> MeRead | None:
        u = users.c
        stmt = select(u.id, u.username, u.email, u.email_verified, u.roles, u.created_at).where(
            u.id == self._user_id, u.is_active.is_(True)
        )
        row = (await self._session.execute(stmt)).first()
        if row is None:
            return None
        factors = await FactorStore(self._session).state(self._user_id)
        mfa = MfaState(totp=factors.totp, passkeys=factors.passkeys, recovery_codes_left=factors.recovery_codes_left)
        return MeRead(
            str(row.id), row.username, row.email, row.email_verified, list(row.roles or []), row.created_at, mfa
        )

    async def sessions(self, current: str, now: dt.datetime) -> list[SessionRead]:
        """Live sessions (refresh families with a live token), the last refreshed first."""
        t = refresh_tokens.c
        stmt = (
            select(t.family_id, t.session_started_at, t.issued_at, t.expires_at, t.ip_address, t.user_agent)
            .where(t.user_id == self._user_id, t.spent_at.is_(None), t.revoked_at.is_(None), t.expires_at > now)
            .order_by(t.issued_at.desc())
        )
        rows = (await self._session.execute(stmt)).all()
        return [
            SessionRead(
                str(r.family_id),
                r.session_started_at or r.issued_at,
                r.issued_at,
                r.expires_at,
                r.ip_address,
                r.user_agent,
                str(r.family_id) == current,
            )
            for r in rows
        ]

    async def owns_live_session(self, family_id: uuid.UUID, now: dt.datetime) -> bool:
        t = refresh_tokens.c
        stmt = select(t.id).where(
            t.family_id == family_id,
            t.user_id == self._user_id,
            t.spent_at.is_(None),
            t.revoked_at.is_(None),
            t.expires_at > now,
        )
        return (await self._session.execute(stmt.limit(1))).first() is not None

    async def logins(self, limit: int, cursor: str | None) -> LoginPage:
        """Own login records, newest first, `limit` at a time after `cursor`."""
        r = login_records.c
        where: list[Any] = [r.user_id == self._user_id]
        if cursor:
            at, row_id = decode_cursor(cursor)
            # One row-value comparison: the index scan starts at the cursor (see users/audit.py).
            where.append(
                tuple_(r.login_timestamp, r.id)
                < tuple_(literal(at, r.login_timestamp.type), literal(row_id, r.id.type))
            )
        stmt = (
            select(r.id, r.login_timestamp, r.ip_address, r.user_agent, r.success, r.failure_reason)
            .where(*where)
            .order_by(r.login_timestamp.desc(), r.id.desc())
            .limit(limit + 1)
        )
        rows = (await self._session.execute(stmt)).all()
        page = rows[:limit]
        items = [LoginRead(x.login_timestamp, x.ip_address, x.user_agent, x.success, x.failure_reason) for x in page]
        more = len(rows) > limit
        return LoginPage(items, encode_cursor(page[-1].login_timestamp, page[-1].id) if more else None)
