"""Every query lives here, on Advanced Alchemy repositories."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple, cast
from uuid import UUID, uuid4

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    BindParameter,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.models import LoginRecord, Notification, RefreshToken, TokenBlacklist, User, identity_key

__all__ = [
    "LoginOutcome",
    "LoginRecordRepository",
    "LoginUser",
    "NotificationRepository",
    "OutboxRow",
    "RefreshOwner",
    "RefreshTokenRepository",
    "Rotation",
    "SpentToken",
    "TokenBlacklistRepository",
    "UserRepository",
]

# The login and refresh hot paths run prebuilt Core statements with bound parameters: no ORM
# unit of work, no per-request statement construction, and a cache key computed once per
# statement (SQLAlchemy memoizes it on the object). They use the generic `insert`: the PostgreSQL
# dialect's has no cache key, so every execution would compile the whole statement again. They
# still run on the request's session, so the pool pre-ping and the OTel SQL spans apply as to
# every other query.
#
# Bind parameters of a statement holding an UPDATE never take a column's name: SQLAlchemy turns
# an execute parameter named like a column into a SET of that column (even inside a CTE).
_users = cast(Table, User.__table__)
_tokens = cast(Table, RefreshToken.__table__)
_records = cast(Table, LoginRecord.__table__)
_outbox = cast(Table, Notification.__table__)


def _param(name: str, column: Any) -> BindParameter[Any]:
    return bindparam(name, type_=column.type)


class LoginUser(NamedTuple):
    """What a login needs of a user: no ORM object, nothing to flush."""

    id: UUID
    username: str
    password_hash: str
    is_active: bool
    roles: list[str]
    tokens_valid_after: dt.datetime | None


class RefreshOwner(NamedTuple):
    """The family and owner of a presented refresh token, read under the owner's share lock."""

    family_id: UUID
    user_id: UUID


class OutboxRow(NamedTuple):
    """A notification to write in the same transaction as the login that caused it."""

    id: UUID
    kind: str
    job: str
    payload: dict[str, Any]


class LoginOutcome(NamedTuple):
    """The login history judged just before this login's own writes."""

    has_earlier_success: bool
    seen_this_device: bool
    recent_failures: int


class Rotation(NamedTuple):
    """A refresh token that was just spent, and its owner (None fields when the user is gone).

    The successor was written only when the owner exists and is active.
    """

    family_id: UUID
    user_id: UUID
    username: str | None
    roles: list[str] | None
    is_active: bool | None


class SpentToken(NamedTuple):
    """A refresh token that is not live, its successor (if any) and its owner, read in one query."""

    family_id: UUID
    user_id: UUID
    spent_at: dt.datetime | None
    revoked_at: dt.datetime | None
    replaced_by_id: UUID | None
    successor_hash: str | None
    successor_revoked_at: dt.datetime | None
    successor_expires_at: dt.datetime | None
    username: str | None
    roles: list[str] | None
    is_active: bool | None


_LOGIN_USER = select(
    _users.c.id,
    _users.c.username,
    _users.c.password_hash,
    _users.c.is_active,
    _users.c.roles,
    _users.c.tokens_valid_after,
).where(_users.c.username_key == bindparam("username_key"))

# A login's rehash (legacy bcrypt, or argon2id with old parameters): only over the hash that
# was checked, so a password change committed meanwhile is never overwritten.
_REHASH = (
    update(_users)
    .where(_users.c.id == _param("user_id", _users.c.id), _users.c.password_hash == bindparam("checked_hash"))
    .values(password_hash=bindparam("new_hash"), updated_at=_param("now", _users.c.updated_at))
)

_INSERT_RECORD = insert(_records).values(
    id=_param("record_id", _records.c.id),
    user_id=_param("user_id", _records.c.user_id),
    username=bindparam("username"),
    ip_address=bindparam("ip"),
    user_agent=bindparam("user_agent"),
    success=bindparam("success"),
    failure_reason=bindparam("failure_reason"),
)

_INSERT_OUTBOX = insert(_outbox).values(
    id=_param("note_id", _outbox.c.id),
    kind=bindparam("kind"),
    job=bindparam("job"),
    user_id=_param("user_id", _outbox.c.user_id),
    payload=_param("payload", _outbox.c.payload),
    # Python-side defaults are not applied inside a CTE: say it here.
    attempts=0,
)


def _checked_user() -> Any:
    """The login's user, still as its password check saw it (same hash, same
    tokens_valid_after, active), under a share lock held to the end of the transaction.

    A revocation (password change, logout everywhere, deactivation, "this wasn't me") locks
    the same row for update first: if it committed after the check, this finds no row and the
    session is not opened; if it comes later, it waits for this login to commit and then sees,
    and revokes, the new session.
    """
    u = _users.c
    return (
        select(u.id)
        .where(
            u.id == _param("user_id", u.id),
            u.password_hash == bindparam("checked_hash"),
            u.tokens_valid_after.is_not_distinct_from(_param("checked_valid_after", u.tokens_valid_after)),
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
    t, o, r = _tokens.c, _outbox.c, _records.c
    token = _insert_from(
        _tokens,
        checked,
        {
            "id": _param("token_id", t.id),
            "token_hash": _param("token_hash", t.token_hash),
            "family_id": _param("family_id", t.family_id),
            "user_id": _param("user_id", t.user_id),
            "issued_at": _param("now", t.issued_at),
            "expires_at": _param("expires_at", t.expires_at),
        },
    )
    note = _insert_from(
        _outbox,
        checked,
        {
            "id": _param("note_id", o.id),
            "kind": _param("kind", o.kind),
            "job": _param("job", o.job),
            "user_id": _param("user_id", o.user_id),
            "payload": _param("payload", o.payload),
            "attempts": literal(0, o.attempts.type),
        },
    )
    record = _insert_from(
        _records,
        checked,
        {
            "id": _param("record_id", r.id),
            "user_id": _param("user_id", r.user_id),
            "username": _param("username", r.username),
            "ip_address": _param("ip", r.ip_address),
            "user_agent": _param("user_agent", r.user_agent),
            "success": literal(True, r.success.type),
            "failure_reason": null(),
        },
    )
    return token, note, record


def _history(*, any_agent: bool) -> Select[Any]:
    """(a success since :success_since, a success since then from :ip and :user_agent (any agent
    when `any_agent`), failures since :failures_since) of :user_id."""
    r = _records.c
    user_id = _param("user_id", r.user_id)
    successes = select(r.id).where(
        r.user_id == user_id, r.success.is_(True), r.login_timestamp > _param("success_since", r.login_timestamp)
    )
    same_device = successes.where(r.ip_address == bindparam("ip"))
    if not any_agent:
        same_device = same_device.where(r.user_agent == bindparam("user_agent"))
    failures = select(func.count()).where(
        r.user_id == user_id, r.success.is_(False), r.login_timestamp > _param("failures_since", r.login_timestamp)
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


def _rotate() -> Select[Any]:
    """Spend a live token and write its successor, in one statement.

    The UPDATE's row lock makes a concurrent spend of the same token wait, then re-check
    `spent_at` and match nothing, so its INSERT (fed by the UPDATE's RETURNING) writes nothing:
    only one caller ever mints a successor. The successor is written only for an active owner.
    """
    t, u = _tokens.c, _users.c
    now = _param("now", t.spent_at)
    successor_id = _param("successor_id", t.id)
    spent = (
        update(_tokens)
        .where(
            t.token_hash == bindparam("presented_hash"),
            t.spent_at.is_(None),
            t.revoked_at.is_(None),
            t.expires_at > now,
        )
        .values(spent_at=now, replaced_by_id=successor_id)
        .returning(t.family_id, t.user_id)
        .cte("spent")
    )
    successor = insert(_tokens).from_select(
        ["id", "token_hash", "family_id", "user_id", "issued_at", "expires_at"],
        select(
            successor_id,
            bindparam("successor_hash", type_=t.token_hash.type),
            spent.c.family_id,
            spent.c.user_id,
            now,
            _param("successor_expires_at", t.expires_at),
        )
        .join_from(spent, _users, u.id == spent.c.user_id)
        .where(u.is_active.is_(True)),
    )
    return (
        select(spent.c.family_id, spent.c.user_id, u.username, u.roles, u.is_active)
        .join_from(spent, _users, u.id == spent.c.user_id, isouter=True)
        .add_cte(successor.cte("successor"))
    )


_ROTATE = _rotate()


def _not_live() -> Select[Any]:
    t = _tokens.c
    follower = _tokens.alias("successor")
    return (
        select(
            t.family_id,
            t.user_id,
            t.spent_at,
            t.revoked_at,
            t.replaced_by_id,
            follower.c.token_hash,
            follower.c.revoked_at,
            follower.c.expires_at,
            _users.c.username,
            _users.c.roles,
            _users.c.is_active,
        )
        .select_from(_tokens)
        .outerjoin(follower, follower.c.id == t.replaced_by_id)
        .outerjoin(_users, _users.c.id == t.user_id)
        .where(t.token_hash == bindparam("presented_hash"))
    )


_NOT_LIVE = _not_live()

_LOCK_OWNER = (
    select(_tokens.c.family_id, _tokens.c.user_id)
    .join_from(_tokens, _users, _users.c.id == _tokens.c.user_id)
    .where(_tokens.c.token_hash == bindparam("presented_hash"))
    .with_for_update(read=True, of=_users)
)


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User

    async def get_by_username(self, username: str) -> User | None:
        return await self.get_one_or_none(User.username_key == identity_key(username))

    async def for_login(self, username: str) -> LoginUser | None:
        """The user a login names (compared as identity keys), as plain values."""
        row = (await self.session.execute(_LOGIN_USER, {"username_key": identity_key(username)})).first()
        return None if row is None else LoginUser(*row)

    async def rehash(self, user_id: UUID, checked_hash: str, new_hash: str, now: dt.datetime) -> bool:
        """Replace the hash a login checked with its upgrade; False when it changed meanwhile."""
        params = {"user_id": user_id, "checked_hash": checked_hash, "new_hash": new_hash, "now": now}
        return bool((await self.session.execute(_REHASH, params)).rowcount)  # type: ignore[attr-defined]

    async def exists_username_or_email(self, username: str, email: str) -> bool:
        stmt = select(User.id).where(
            (User.username_key == identity_key(username)) | (User.email_key == identity_key(email))
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def active_admin_emails(self) -> list[str]:
        stmt = select(User.email).where(User.is_active.is_(True), User.roles.any("admin")).order_by(User.email)  # type: ignore[arg-type]
        return [str(email) for email in (await self.session.execute(stmt)).scalars()]

    async def count_admins(self) -> int:
        stmt = select(func.count()).select_from(User).where(User.roles.any("admin"))  # type: ignore[arg-type]
        return int((await self.session.execute(stmt)).scalar_one())

    async def hash_kinds(self, limit: int = 32) -> list[str]:
        """The distinct algorithm-and-parameter prefixes of the stored password hashes
        (`$argon2id$v=19$m=19456,t=2,p=1`, `$2b$12`), for the failure floor's calibration."""
        h = User.password_hash
        argon2 = func.concat(
            "$", func.split_part(h, "$", 2), "$", func.split_part(h, "$", 3), "$", func.split_part(h, "$", 4)
        )
        other = func.concat("$", func.split_part(h, "$", 2), "$", func.split_part(h, "$", 3))
        kind = case((h.startswith("$argon2"), argon2), else_=other)
        stmt = select(kind).distinct().limit(limit)
        return [str(value) for value in (await self.session.execute(stmt)).scalars()]

    async def revocation_state(
        self, user_id: UUID, *, share_lock: bool = False
    ) -> tuple[bool, dt.datetime | None] | None:
        """(is_active, tokens_valid_after) of a user, or None when the user is gone; with
        `share_lock`, the row stays share-locked until the transaction ends (the refill)."""
        stmt = select(User.is_active, User.tokens_valid_after).where(User.id == user_id)
        if share_lock:
            stmt = stmt.with_for_update(read=True)
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def lock_for_update(self, user_id: UUID) -> tuple[bool, dt.datetime | None] | None:
        """Lock the user's row for this transaction (every revocation's first statement)."""
        stmt = select(User.is_active, User.tokens_valid_after).where(User.id == user_id).with_for_update()
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def set_tokens_valid_after(self, user_id: UUID, now: dt.datetime) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(tokens_valid_after=now))

    async def set_active(self, user_id: UUID, active: bool) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(is_active=active))

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


class LoginRecordRepository(SQLAlchemyAsyncRepository[LoginRecord]):
    model_type = LoginRecord

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


class NotificationRepository(SQLAlchemyAsyncRepository[Notification]):
    model_type = Notification

    async def add_outbox(self, user_id: UUID, note: OutboxRow) -> None:
        params = {"note_id": note.id, "kind": note.kind, "job": note.job, "user_id": user_id, "payload": note.payload}
        await self.session.execute(_INSERT_OUTBOX, params)

    async def claim(self, notification_id: UUID, now: dt.datetime, lease: dt.timedelta) -> Notification | None:
        """Take the right to send, for `lease`; None when it was sent, dropped, or another worker holds it."""
        stmt = (
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.sent_at.is_(None),
                Notification.dropped_at.is_(None),
                (Notification.claimed_until.is_(None)) | (Notification.claimed_until < now),
            )
            .values(claimed_until=now + lease, attempts=Notification.attempts + 1)
            .returning(Notification)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def finish(self, notification_id: UUID, now: dt.datetime, *, sent: bool, error: str | None = None) -> None:
        values: dict[str, object] = {"claimed_until": None, "last_error": error}
        if sent:
            values["sent_at"] = now
        elif error is not None and error.startswith("permanent:"):
            values["dropped_at"] = now
        await self.session.execute(update(Notification).where(Notification.id == notification_id).values(**values))

    async def undelivered(self, created_before: dt.datetime, limit: int) -> list[Notification]:
        """Notifications still unsent (and not given up on) that were created before `created_before`."""
        stmt = (
            select(Notification)
            .where(
                Notification.sent_at.is_(None),
                Notification.dropped_at.is_(None),
                Notification.created_at < created_before,
            )
            .order_by(Notification.created_at)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def disavow(self, notification_id: UUID, user_id: UUID, now: dt.datetime) -> bool:
        """Use a notification's "this wasn't me" link once; False when already used or unknown."""
        stmt = (
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.user_id == user_id,
                Notification.disavowed_at.is_(None),
            )
            .values(disavowed_at=now)
        )
        return bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


class TokenBlacklistRepository(SQLAlchemyAsyncRepository[TokenBlacklist]):
    model_type = TokenBlacklist

    async def blacklist(self, jti: str, user_id: UUID, expires_at: dt.datetime) -> None:
        """Insert a jti; a second logout with the same token changes nothing."""
        stmt = (
            pg_insert(TokenBlacklist)
            .values(token_jti=jti, user_id=user_id, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[TokenBlacklist.token_jti])
        )
        await self.session.execute(stmt)

    async def is_blacklisted(self, jti: str) -> bool:
        stmt = select(TokenBlacklist.id).where(TokenBlacklist.token_jti == jti).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def live_for_user(self, user_id: UUID, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        stmt = select(TokenBlacklist.token_jti, TokenBlacklist.expires_at).where(
            TokenBlacklist.user_id == user_id, TokenBlacklist.expires_at > now
        )
        return [(row[0], row[1]) for row in await self.session.execute(stmt)]

    async def delete_expired(self, now: dt.datetime, batch_size: int) -> int:
        doomed = select(TokenBlacklist.id).where(TokenBlacklist.expires_at <= now).limit(batch_size)
        result = await self.session.execute(
            delete(TokenBlacklist).where(TokenBlacklist.id.in_(doomed.scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class RefreshTokenRepository(SQLAlchemyAsyncRepository[RefreshToken]):
    model_type = RefreshToken

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return await self.get_one_or_none(RefreshToken.token_hash == token_hash)

    async def lock_owner(self, token_hash: str) -> RefreshOwner | None:
        """The family and owner of a refresh token (live or not), share-locking the owner's row
        to the end of the transaction: a rotation and a revocation of the same user never
        interleave (the revocation locks the row for update first). None when unknown."""
        row = (await self.session.execute(_LOCK_OWNER, {"presented_hash": token_hash})).first()
        return None if row is None else RefreshOwner(*row)

    async def rotate(
        self, token_hash: str, *, successor_id: UUID, successor_hash: str, now: dt.datetime, expires_at: dt.datetime
    ) -> Rotation | None:
        """Atomically spend a live token and write its successor (for an active owner) in one
        statement; None when the token was not live.

        The row lock of the UPDATE makes a concurrent second spend wait, then find `spent_at`
        set and match nothing: only one caller ever wins.
        """
        params = {
            "presented_hash": token_hash,
            "successor_id": successor_id,
            "successor_hash": successor_hash,
            "now": now,
            "successor_expires_at": expires_at,
        }
        row = (await self.session.execute(_ROTATE, params)).first()
        return None if row is None else Rotation(*row)

    async def not_live(self, token_hash: str) -> SpentToken | None:
        """A token that could not be spent, with its successor and owner; None when unknown."""
        row = (await self.session.execute(_NOT_LIVE, {"presented_hash": token_hash})).first()
        return None if row is None else SpentToken(*row)

    async def revoke_family(self, family_id: UUID, now: dt.datetime) -> int:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int((await self.session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]

    async def revoke_user(self, user_id: UUID, now: dt.datetime) -> int:
        """Revoke every token of the user; returns how many sessions (families) still had one."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(RefreshToken.family_id)
        )
        return len(set((await self.session.execute(stmt)).scalars()))

    async def family_revoked(self, family_id: UUID) -> bool:
        stmt = select(RefreshToken.id).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def families_revoked_since(self, user_id: UUID, since: dt.datetime) -> list[UUID]:
        stmt = (
            select(RefreshToken.family_id)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at > since)
            .distinct()
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete_expired(self, now: dt.datetime, revoked_before: dt.datetime, batch_size: int) -> int:
        doomed = (
            select(RefreshToken.id)
            .where((RefreshToken.expires_at <= now) | (RefreshToken.revoked_at <= revoked_before))
            .limit(batch_size)
        )
        result = await self.session.execute(delete(RefreshToken).where(RefreshToken.id.in_(doomed.scalar_subquery())))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
