"""A login's statements: the user it names, its rehash, its record, and the one statement that
opens its session (refresh token, login record, outbox row) under the user's share lock."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    Select,
    Table,
    bindparam,
    func,
    insert,
    literal,
    null,
    select,
    update,
)

from auth_service.domain.auth.mfa.store import TotpRow
from auth_service.domain.notifications.repository import OutboxRow
from db.models import LoginRecord, identity_key
from db.sql import (
    login_records,
    mfa_recovery_codes,
    mfa_totp,
    notifications,
    param,
    refresh_tokens,
    users,
    webauthn_credentials,
)

__all__ = ["LoginOutcome", "LoginRecordRepository", "LoginUser"]


class LoginUser(NamedTuple):
    """What a login needs of a user: no ORM object, nothing to flush."""

    id: UUID
    username: str
    password_hash: str
    is_active: bool
    roles: list[str]
    tokens_valid_after: dt.datetime | None
    email_verified: bool = True
    # The second factors the challenge asks for (read with the user: no round trip of their own).
    totp: bool = False
    passkeys: int = 0
    recovery_codes_left: int = 0


class LoginOutcome(NamedTuple):
    """The login history judged just before this login's own writes."""

    has_earlier_success: bool
    seen_this_device: bool
    recent_failures: int


# The user's second factors, as scalar subqueries of the login's one read: each is an index
# lookup (mfa_totp's key, webauthn_credentials.user_id, the codes' (user_id, code_hash) index),
# so a login of a user without a factor pays no round trip for them.
_HAS_TOTP = (
    select(mfa_totp.c.user_id)
    .where(mfa_totp.c.user_id == users.c.id, mfa_totp.c.confirmed_at.is_not(None))
    .correlate(users)
    .exists()
)
_PASSKEYS = select(func.count()).where(webauthn_credentials.c.user_id == users.c.id).correlate(users).scalar_subquery()
_CODES_LEFT = (
    select(func.count())
    .where(mfa_recovery_codes.c.user_id == users.c.id, mfa_recovery_codes.c.used_at.is_(None))
    .correlate(users)
    .scalar_subquery()
)
_LOGIN_USER = select(
    users.c.id,
    users.c.username,
    users.c.password_hash,
    users.c.is_active,
    users.c.roles,
    users.c.tokens_valid_after,
    users.c.email_verified,
    _HAS_TOTP,
    _PASSKEYS,
    _CODES_LEFT,
).where(users.c.username_key == bindparam("username_key"))

# The second step's read: the user as above and, in the same round trip, its TOTP authenticator
# (NULLs without one), so a TOTP proof costs no statement of its own before its claim.
_LOGIN_USER_TOTP = _LOGIN_USER.add_columns(
    mfa_totp.c.secret_ciphertext, mfa_totp.c.confirmed_at.is_not(None), mfa_totp.c.last_used_step
).select_from(users.outerjoin(mfa_totp, mfa_totp.c.user_id == users.c.id))

# A login's rehash (legacy bcrypt, or argon2id with old parameters): only over the hash that
# was checked, so a password change committed meanwhile is never overwritten.
_REHASH = (
    update(users)
    .where(users.c.id == param("user_id", users.c.id), users.c.password_hash == bindparam("checked_hash"))
    .values(password_hash=bindparam("new_hash"), updated_at=param("now", users.c.updated_at))
)

# A failed login's record names its user only if the user still exists: one deleted since the
# password check (login_records.user_id references users) is recorded like an unknown user,
# with no user, in the same statement. FOR KEY SHARE makes a delete in flight finish first (the
# subquery then finds nothing) or wait for this insert (and then sets its user_id to null).
_LIVE_USER_ID = (
    select(users.c.id)
    .where(users.c.id == param("user_id", users.c.id))
    .with_for_update(read=True, key_share=True)
    .scalar_subquery()
)
_INSERT_RECORD = insert(login_records).values(
    id=param("record_id", login_records.c.id),
    user_id=_LIVE_USER_ID,
    username=bindparam("username"),
    ip_address=bindparam("ip"),
    user_agent=bindparam("user_agent"),
    success=bindparam("success"),
    failure_reason=bindparam("failure_reason"),
)


def _checked_user() -> Any:
    """The login's user, still as its password check saw it (same hash, same
    tokens_valid_after, active), under a share lock held to the end of the transaction.

    A revocation (password change, logout everywhere, deactivation, "this wasn't me") locks
    the same row for update first: if it committed after the check, this finds no row and the
    session is not opened; if it comes later, it waits for this login to commit and then sees,
    and revokes, the new session.
    """
    u = users.c
    return (
        select(u.id)
        .where(
            u.id == param("user_id", u.id),
            u.password_hash == bindparam("checked_hash"),
            u.tokens_valid_after.is_not_distinct_from(param("checked_valid_after", u.tokens_valid_after)),
            u.is_active.is_(True),
        )
        .with_for_update(read=True)
        .cte("checked_user")
    )


def _insert_from(table: Table, source: Any, values: dict[str, Any]) -> Any:
    """INSERT INTO table (values' columns) SELECT values FROM source: one row when source has one."""
    return insert(table).from_select(list(values), select(*values.values()).select_from(source)).returning(table.c.id)


def _session_writes(checked: Any) -> tuple[Any, Any, Any]:
    """The refresh token, outbox row and login record of a successful login, each written only
    when the checked user is there."""
    t, o, r = refresh_tokens.c, notifications.c, login_records.c
    token = _insert_from(
        refresh_tokens,
        checked,
        {
            "id": param("token_id", t.id),
            "token_hash": param("token_hash", t.token_hash),
            "family_id": param("family_id", t.family_id),
            "user_id": param("user_id", t.user_id),
            "issued_at": param("now", t.issued_at),
            "expires_at": param("expires_at", t.expires_at),
            "ip_address": param("ip", t.ip_address),
            "user_agent": param("user_agent", t.user_agent),
            "session_started_at": param("now", t.session_started_at),
            "amr": param("amr", t.amr),
        },
    )
    note = _insert_from(
        notifications,
        checked,
        {
            "id": param("note_id", o.id),
            "kind": param("kind", o.kind),
            "job": param("job", o.job),
            "user_id": param("user_id", o.user_id),
            "payload": param("payload", o.payload),
            "attempts": literal(0, o.attempts.type),
        },
    )
    record = _insert_from(
        login_records,
        checked,
        {
            "id": param("record_id", r.id),
            "user_id": param("user_id", r.user_id),
            "username": param("username", r.username),
            "ip_address": param("ip", r.ip_address),
            "user_agent": param("user_agent", r.user_agent),
            "success": literal(True, r.success.type),
            "failure_reason": null(),
        },
    )
    return token, note, record


def _history(*, any_agent: bool) -> Select[Any]:
    """(a success since :success_since, a success since then from :ip and :user_agent (any agent
    when `any_agent`), failures since :failures_since) of :user_id."""
    r = login_records.c
    user_id = param("user_id", r.user_id)
    successes = select(r.id).where(
        r.user_id == user_id, r.success.is_(True), r.login_timestamp > param("success_since", r.login_timestamp)
    )
    same_device = successes.where(r.ip_address == bindparam("ip"))
    if not any_agent:
        same_device = same_device.where(r.user_agent == bindparam("user_agent"))
    failures = select(func.count()).where(
        r.user_id == user_id, r.success.is_(False), r.login_timestamp > param("failures_since", r.login_timestamp)
    )
    return select(successes.exists(), same_device.exists(), failures.scalar_subquery())


def _open_session(*, any_agent: bool) -> Select[Any]:
    """A successful login's writes (refresh token, outbox row, login record), the history it
    is judged against, and whether the session was opened, in one statement.

    Every part of a statement sees the same snapshot, taken before it ran, so the history
    does not include this login's own record. The writes happen only if the user is still
    as the password check saw it (`_checked_user`)."""
    checked = _checked_user()
    names = ("new_token", "new_note", "new_record")
    token, note, record = (part.cte(name) for part, name in zip(_session_writes(checked), names, strict=True))
    opened = select(func.count()).select_from(token).scalar_subquery()
    history = _history(any_agent=any_agent)
    return select(*history.selected_columns, opened).add_cte(checked, token, note, record)


_OPEN_SESSION = {False: _open_session(any_agent=False), True: _open_session(any_agent=True)}


class LoginRecordRepository(SQLAlchemyAsyncRepository[LoginRecord]):
    """Login records, and the user lookups and writes of a login."""

    model_type = LoginRecord

    async def for_login(self, username: str) -> LoginUser | None:
        """The user a login names (compared as identity keys), as plain values."""
        row = (await self.session.execute(_LOGIN_USER, {"username_key": identity_key(username)})).first()
        return None if row is None else LoginUser(*row)

    async def for_second_step(self, username: str) -> tuple[LoginUser | None, TotpRow | None]:
        """The user a pending login names, read again, and its TOTP authenticator: one statement."""
        row = (await self.session.execute(_LOGIN_USER_TOTP, {"username_key": identity_key(username)})).first()
        if row is None:
            return None, None
        *user, ciphertext, confirmed, last_step = row
        totp = None if ciphertext is None else TotpRow(bytes(ciphertext), bool(confirmed), last_step)
        return LoginUser(*user), totp

    async def rehash(self, user_id: UUID, checked_hash: str, new_hash: str, now: dt.datetime) -> bool:
        """Replace the hash a login checked with its upgrade; False when it changed meanwhile."""
        params = {"user_id": user_id, "checked_hash": checked_hash, "new_hash": new_hash, "now": now}
        return bool((await self.session.execute(_REHASH, params)).rowcount)  # type: ignore[attr-defined]

    async def record_failure(
        self, *, user_id: UUID | None, username: str, ip: str, user_agent: str | None, reason: str
    ) -> None:
        params = {"record_id": uuid4(), "user_id": user_id, "username": username, "ip": ip, "user_agent": user_agent}
        await self.session.execute(_INSERT_RECORD, {**params, "success": False, "failure_reason": reason})

    async def record_success(
        self,
        *,
        user_id: UUID,
        username: str,
        ip: str,
        user_agent: str | None,
        refresh_token: tuple[UUID, str, UUID, dt.datetime, dt.datetime],
        note: OutboxRow,
        success_since: dt.datetime,
        failures_since: dt.datetime,
        checked_hash: str,
        checked_valid_after: dt.datetime | None,
        amr: list[str] | None = None,
    ) -> LoginOutcome | None:
        """Write a successful login, its refresh token and its outbox row, and read the history it
        is judged against (as it was before this login), in one statement; None (nothing written)
        when the user's hash, tokens_valid_after or active flag changed since the password check.

        Args:
            refresh_token: (id, token hash, family id, issued at, expires at).
            success_since: the new-device window; a success from this IP and user agent (any agent
                when None) in it means a known device.
            failures_since: the window of failed attempts counted.
        """
        token_id, token_hash, family_id, issued_at, expires_at = refresh_token
        params = {
            "user_id": user_id,
            "record_id": uuid4(),
            "username": username,
            "ip": ip,
            "user_agent": user_agent,
            "token_id": token_id,
            "token_hash": token_hash,
            "family_id": family_id,
            "now": issued_at,
            "expires_at": expires_at,
            "note_id": note.id,
            "kind": note.kind,
            "job": note.job,
            "payload": note.payload,
            "success_since": success_since,
            "failures_since": failures_since,
            "checked_hash": checked_hash,
            "checked_valid_after": checked_valid_after,
            "amr": list(amr or ["pwd"]),
        }
        row = (await self.session.execute(_OPEN_SESSION[user_agent is None], params)).one()
        if not row[3]:
            return None
        return LoginOutcome(bool(row[0]), bool(row[1]), int(row[2]))

    async def day_totals(self, start: dt.datetime, end: dt.datetime) -> tuple[int, int, int]:
        """(attempts, successes, distinct successful users) in [start, end)."""
        window = (LoginRecord.login_timestamp >= start, LoginRecord.login_timestamp < end)
        stmt = select(
            func.count(),
            func.count().filter(LoginRecord.success.is_(True)),
            func.count(func.distinct(LoginRecord.user_id)).filter(LoginRecord.success.is_(True)),
        ).where(*window)
        row = (await self.session.execute(stmt)).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def top_failing(
        self, column: str, start: dt.datetime, end: dt.datetime, limit: int = 10
    ) -> list[tuple[str, int]]:
        """The `ip_address` or `username` values with the most failed logins in [start, end)."""
        field = {"ip_address": LoginRecord.ip_address, "username": LoginRecord.username}[column]
        stmt = (
            select(field, func.count().label("failures"))
            .where(
                LoginRecord.success.is_(False), LoginRecord.login_timestamp >= start, LoginRecord.login_timestamp < end
            )
            .group_by(field)
            .order_by(func.count().desc(), field)
            .limit(limit)
        )
        return [(str(row[0]), int(row[1])) for row in await self.session.execute(stmt)]
