"""Accounts: lookups by identity key, and the writes of user administration."""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    case,
    func,
    select,
    update,
)

from db.models import User, identity_key

__all__ = ["UserRepository"]


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User

    async def get_by_username(self, username: str) -> User | None:
        return await self.get_one_or_none(User.username_key == identity_key(username))

    async def exists_username_or_email(self, username: str, email: str) -> bool:
        stmt = select(User.id).where(
            (User.username_key == identity_key(username)) | (User.email_key == identity_key(email))
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def active_admin_emails(self) -> list[str]:
        stmt = select(User.email).where(User.is_active.is_(True), User.roles.any("admin")).order_by(User.email)  # type: ignore[arg-type]
        return [str(email) for email in (await self.session.execute(stmt)).scalars()]

    async def listing(self, limit: int, offset: int = 0) -> list[User]:
        """Users in username order (by identity key), a page at a time."""
        stmt = select(User).order_by(User.username_key).limit(limit).offset(offset)
        return list((await self.session.execute(stmt)).scalars())

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

    async def set_active(self, user_id: UUID, active: bool) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(is_active=active))

    async def set_email(self, user_id: UUID, email: str) -> None:
        """A new, unverified address (its identity key's unique index refuses a taken one)."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(email=email, email_key=identity_key(email), email_verified=False)
        )

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
