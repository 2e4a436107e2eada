"""The admin's reads: users, login records and audit events, a keyset page at a time.

Every listing is newest first and pages by (time, id) (lib/pagination.py): one index range scan
per page whatever the table's size or the page's depth, and rows that arrive during a walk
never shift it (they are newer than its first page). A row's time is its transaction's start:
one that commits long after it began (a change that waited on a lock) can land behind a walk
already past that time. Each filter has an index that starts with
its column and ends with (time, id) (migration 0006).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from sqlalchemy import literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.admin.service import COLUMNS, AdminUserRead, read_user
from auth_service.lib.pagination import decode_cursor, encode_cursor
from db.models import identity_key
from db.sql import audit_events, login_records, users

__all__ = [
    "AdminReads",
    "AuditEventPage",
    "AuditEventRead",
    "AuditFilter",
    "LoginRecordFilter",
    "LoginRecordPage",
    "LoginRecordRead",
    "UserFilter",
    "UserPage",
]


class UserPage(msgspec.Struct):
    items: list[AdminUserRead]
    next_cursor: str | None


class LoginRecordRead(msgspec.Struct):
    id: str
    at: dt.datetime
    user_id: str | None
    username: str
    ip_address: str
    user_agent: str | None
    success: bool
    failure_reason: str | None


class LoginRecordPage(msgspec.Struct):
    items: list[LoginRecordRead]
    next_cursor: str | None


class AuditEventRead(msgspec.Struct):
    id: str
    at: dt.datetime
    actor_id: str | None
    actor_ip: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    request_id: str | None


class AuditEventPage(msgspec.Struct):
    items: list[AuditEventRead]
    next_cursor: str | None


class UserFilter(msgspec.Struct, frozen=True):
    q: str | None = None
    role: str | None = None
    active: bool | None = None


class LoginRecordFilter(msgspec.Struct, frozen=True):
    user_id: uuid.UUID | None = None
    username: str | None = None
    ip: str | None = None
    success: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class AuditFilter(msgspec.Struct, frozen=True):
    actor_id: uuid.UUID | None = None
    action: str | None = None
    target_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def _after(at_column: Any, id_column: Any, cursor: str | None) -> list[Any]:
    """Rows after the cursor, as one row-value comparison: PostgreSQL starts the index scan at
    the cursor with it (`a < x OR (a = x AND b < y)` would be a filter over every row before)."""
    if not cursor:
        return []
    at, row_id = decode_cursor(cursor)
    return [tuple_(at_column, id_column) < tuple_(literal(at, at_column.type), literal(row_id, id_column.type))]


def _window(at_column: Any, since: dt.datetime | None, until: dt.datetime | None) -> list[Any]:
    where = []
    if since is not None:
        where.append(at_column >= since)
    if until is not None:
        where.append(at_column < until)
    return where


def _next(rows: list[Any], limit: int, at: str) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(getattr(last, at), last.id)


class AdminReads:
    """One statement per page; nothing here writes."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def users(self, where: UserFilter, limit: int, cursor: str | None) -> UserPage:
        u = users.c
        clauses = _after(u.created_at, u.id, cursor)
        if where.q:
            prefix = _like_prefix(identity_key(where.q))
            clauses.append(or_(u.username_key.like(prefix, escape="\\"), u.email_key.like(prefix, escape="\\")))
        if where.role:
            clauses.append(u.roles.contains([where.role]))
        if where.active is not None:
            clauses.append(u.is_active.is_(where.active))
        stmt = select(*COLUMNS).where(*clauses).order_by(u.created_at.desc(), u.id.desc()).limit(limit + 1)
        rows = list((await self._session.execute(stmt)).all())
        return UserPage([read_user(r) for r in rows[:limit]], _next(rows, limit, "created_at"))

    async def login_records(self, where: LoginRecordFilter, limit: int, cursor: str | None) -> LoginRecordPage:
        r = login_records.c
        clauses = _after(r.login_timestamp, r.id, cursor) + _window(r.login_timestamp, where.since, where.until)
        if where.user_id is not None:
            clauses.append(r.user_id == where.user_id)
        if where.username is not None:
            clauses.append(r.username == where.username)
        if where.ip is not None:
            clauses.append(r.ip_address == where.ip)
        if where.success is not None:
            clauses.append(r.success.is_(where.success) if where.success else ~r.success)
        stmt = (
            select(
                r.id, r.login_timestamp, r.user_id, r.username, r.ip_address, r.user_agent, r.success, r.failure_reason
            )
            .where(*clauses)
            .order_by(r.login_timestamp.desc(), r.id.desc())
            .limit(limit + 1)
        )
        rows = list((await self._session.execute(stmt)).all())
        items = [
            LoginRecordRead(
                str(x.id),
                x.login_timestamp,
                None if x.user_id is None else str(x.user_id),
                x.username,
                x.ip_address,
                x.user_agent,
                x.success,
                x.failure_reason,
            )
            for x in rows[:limit]
        ]
        return LoginRecordPage(items, _next(rows, limit, "login_timestamp"))

    async def audit_events(self, where: AuditFilter, limit: int, cursor: str | None) -> AuditEventPage:
        a = audit_events.c
        clauses = _after(a.at, a.id, cursor) + _window(a.at, where.since, where.until)
        if where.actor_id is not None:
            clauses.append(a.actor_id == where.actor_id)
        if where.action is not None:
            clauses.append(a.action == where.action)
        if where.target_id is not None:
            clauses.append(a.target_id == where.target_id)
        stmt = (
            select(a.id, a.at, a.actor_id, a.actor_ip, a.action, a.target_type, a.target_id, a.details, a.request_id)
            .where(*clauses)
            .order_by(a.at.desc(), a.id.desc())
            .limit(limit + 1)
        )
        rows = list((await self._session.execute(stmt)).all())
        items = [
            AuditEventRead(
                str(x.id),
                x.at,
                None if x.actor_id is None else str(x.actor_id),
                x.actor_ip,
                x.action,
                x.target_type,
                x.target_id,
                dict(x.details or {}),
                x.request_id,
            )
            for x in rows[:limit]
        ]
        return AuditEventPage(items, _next(rows, limit, "at"))
