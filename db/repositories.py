"""Every query lives here, on Advanced Alchemy repositories."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from db.models import LoginRecord, RefreshToken, TokenBlacklist, User

__all__ = ["LoginRecordRepository", "RefreshTokenRepository", "TokenBlacklistRepository", "UserRepository"]


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User

    async def get_by_username(self, username: str) -> User | None:
        return await self.get_one_or_none(func.lower(User.username) == username.lower())

    async def exists_username_or_email(self, username: str, email: str) -> bool:
        stmt = select(User.id).where(
            (func.lower(User.username) == username.lower()) | (func.lower(User.email) == email.lower())
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

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
