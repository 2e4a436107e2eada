"""Every query lives here, on Advanced Alchemy repositories."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from db.models import LoginRecord, Notification, RefreshToken, TokenBlacklist, User

__all__ = [
    "LoginRecordRepository",
    "NotificationRepository",
    "RefreshTokenRepository",
    "TokenBlacklistRepository",
    "UserRepository",
]


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User

    async def get_by_username(self, username: str) -> User | None:
        return await self.get_one_or_none(func.lower(User.username) == username.lower())

    async def exists_username_or_email(self, username: str, email: str) -> bool:
        stmt = select(User.id).where(
            (func.lower(User.username) == username.lower()) | (func.lower(User.email) == email.lower())
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def active_admin_emails(self) -> list[str]:
        stmt = select(User.email).where(User.is_active.is_(True), User.roles.any("admin")).order_by(User.email)  # type: ignore[arg-type]
        return [str(email) for email in (await self.session.execute(stmt)).scalars()]

    async def count_admins(self) -> int:
        stmt = select(func.count()).select_from(User).where(User.roles.any("admin"))  # type: ignore[arg-type]
        return int((await self.session.execute(stmt)).scalar_one())

    async def revocation_state(self, user_id: UUID) -> tuple[bool, dt.datetime | None] | None:
        """(is_active, tokens_valid_after) of a user, or None when the user is gone."""
        stmt = select(User.is_active, User.tokens_valid_after).where(User.id == user_id)
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])


class LoginRecordRepository(SQLAlchemyAsyncRepository[LoginRecord]):
    model_type = LoginRecord

    async def history(
        self,
        user_id: UUID,
        *,
        success_since: dt.datetime,
        ip: str,
        user_agent: str | None,
        failures_since: dt.datetime,
    ) -> tuple[bool, bool, int]:
        """What a new login is judged against, in one query: (a success since `success_since`,
        a success since then from this IP and user agent (any agent when None), failures since
        `failures_since`)."""
        successes = select(LoginRecord.id).where(
            LoginRecord.user_id == user_id, LoginRecord.success.is_(True), LoginRecord.login_timestamp > success_since
        )
        same_device = successes.where(LoginRecord.ip_address == ip)
        if user_agent is not None:
            same_device = same_device.where(LoginRecord.user_agent == user_agent)
        failures = select(func.count()).where(
            LoginRecord.user_id == user_id, LoginRecord.success.is_(False), LoginRecord.login_timestamp > failures_since
        )
        row = (
            await self.session.execute(select(successes.exists(), same_device.exists(), failures.scalar_subquery()))
        ).one()
        return bool(row[0]), bool(row[1]), int(row[2])

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
            insert(TokenBlacklist)
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

    async def spend(self, token_hash: str, successor_id: UUID, now: dt.datetime) -> RefreshToken | None:
        """Atomically mark a live token spent; None when it was not live.

        The row lock of the UPDATE makes a concurrent second spend wait, then find
        `spent_at` set and match nothing: only one caller ever wins.
        """
        stmt = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.spent_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(spent_at=now, replaced_by_id=successor_id)
            .returning(RefreshToken)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def revoke_family(self, family_id: UUID, now: dt.datetime) -> int:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int((await self.session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]

    async def revoke_user(self, user_id: UUID, now: dt.datetime) -> int:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int((await self.session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]

    async def family_revoked(self, family_id: UUID) -> bool:
        stmt = select(RefreshToken.id).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def families_issued_since(self, user_id: UUID, since: dt.datetime) -> list[UUID]:
        """Families of a user that minted a token since `since` (their access tokens may still live)."""
        stmt = (
            select(RefreshToken.family_id)
            .where(RefreshToken.user_id == user_id, RefreshToken.issued_at > since)
            .distinct()
        )
        return list((await self.session.execute(stmt)).scalars())

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
