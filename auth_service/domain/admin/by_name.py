"""The admin's changes by username, as the CLI makes them: each one is AdminService's (the same
implementation as the admin API's, by id), audited as the CLI's actor by default."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.admin.reads import AdminReads, UserFilter, UserPage
from auth_service.domain.admin.schemas import AdminUserCreate, AdminUserPatch
from auth_service.domain.admin.service import AdminService, AdminUserRead
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.repository import UserRepository
from auth_service.domain.users.schemas import InvalidUserData, UserCreate, UserNotFound, UserRead
from auth_service.lib.audit import CLI, Actor
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.settings import LinkSettings
from db.models import User

__all__ = ["AdminByName"]


def _read(user: User | AdminUserRead) -> UserRead:
    return UserRead(str(user.id), user.username, user.email, list(user.roles or []), user.is_active)


class AdminByName:
    """Creates and changes users by name; commits its own session. Every change is audited as
    `actor`'s (the CLI's by default: no user, `via` "cli")."""

    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        revocation: RevocationStore,
        policy: PasswordPolicy | None = None,
        actor: Actor = CLI,
        *,
        require_verified_email: bool = True,
        lifetimes: LinkSettings = LinkSettings(),
    ) -> None:
        self._lifetimes = lifetimes
        self._actor = actor
        self._require_verified = require_verified_email
        self._policy = policy or PasswordPolicy()
        self._session = session
        self._revocation = revocation
        self._users = UserRepository(session=session)
        self._hasher = hasher

    def admin(self, links: AccountLinks | None = None) -> AdminService:
        """The same changes by id, as the admin API makes them (one implementation for both)."""
        return AdminService(
            self._session,
            self._hasher,
            self._revocation,
            self._policy,
            links,
            lifetimes=self._lifetimes,
            require_verified_email=self._require_verified,
        )

    async def create(self, data: UserCreate) -> UserRead:
        """Create a user (verified: it has a password); audited as `user.create` by the actor.

        Raises:
            InvalidUserData: username, e-mail or roles malformed.
            PasswordPolicyError: the password breaks the policy.
            UserExistsError: the username or e-mail is taken.
        """
        try:
            data = msgspec.convert(msgspec.to_builtins(data), UserCreate)  # re-validates constraints
            create = AdminUserCreate(data.username, data.email, data.roles, data.password)
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        user = await self.admin().create(create, self._actor)
        return _read(user)

    async def get_by_username(self, username: str) -> UserRead | None:
        user = await self._users.get_by_username(username)
        return _read(user) if user else None

    async def list_users(
        self, limit: int = 1000, cursor: str | None = None, role: str | None = None, active: bool | None = None
    ) -> UserPage:
        """A page of users, newest first (the admin listing's query)."""
        page = await AdminReads(self._session).users(UserFilter(role=role, active=active), limit, cursor)
        await self._session.rollback()
        return page

    async def show(self, username: str) -> AdminUserRead:
        """One user by name.

        Raises:
            UserNotFound: no such user.
        """
        return await self.admin().get(await self.admin().id_of(username))

    def reads(self) -> AdminReads:
        """The admin listings on this session (users, login records, audit events)."""
        return AdminReads(self._session)

    async def names_of(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Usernames of the users among `user_ids` that still exist."""
        ids = [uuid.UUID(value) for value in set(user_ids)]
        if not ids:
            return {}
        rows = await self._session.execute(select(User.id, User.username).where(User.id.in_(ids)))
        return {str(row.id): row.username for row in rows}

    async def count_admins(self) -> int:
        return await self._users.count_admins()

    async def set_active(self, username: str, active: bool) -> UserRead:
        """Enable or disable a user; disabling kills every token at once (and is refused for the
        last active admin).

        Raises:
            UserNotFound: no such user.
            LastAdmin: the last active admin cannot be deactivated.
            ServiceUnavailable: Redis could not be told; nothing changed.
        """
        admin = self.admin()
        user_id = await admin.id_of(username)
        return _read(await admin.update(user_id, AdminUserPatch(is_active=active), self._actor))

    async def set_roles(self, username: str, roles: list[str]) -> UserRead:
        """Replace a user's roles; a change ends every token of the user.

        Raises:
            InvalidUserData: a role is malformed.
            UserNotFound, LastAdmin, ServiceUnavailable.
        """
        try:
            patch = msgspec.convert({"roles": roles}, AdminUserPatch)
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        admin = self.admin()
        user_id = await admin.id_of(username)
        return _read(await admin.update(user_id, patch, self._actor))

    async def set_password(self, username: str, password: str) -> UserRead:
        """Change a password (policy applies); every existing token dies.

        Raises:
            UserNotFound: no such user.
            PasswordPolicyError: the password breaks the policy.
            ServiceUnavailable: Redis could not be told; nothing changed.
        """
        admin = self.admin()
        return _read(await admin.set_password(await admin.id_of(username), password, self._actor))

    async def reset_mfa(self, username: str) -> int:
        """Remove every second factor of a user and end its sessions (emergency access);
        returns how many factors went.

        Raises:
            UserNotFound, ServiceUnavailable.
        """
        admin = self.admin()
        return await admin.reset_mfa(await admin.id_of(username), self._actor)

    async def _read_again(self, user_id: Any) -> UserRead:
        self._session.expunge_all()
        user = await self._users.get_one_or_none(User.id == user_id)
        await self._session.commit()
        if user is None:
            raise UserNotFound("the user was deleted meanwhile")
        return _read(user)

    async def _require(self, username: str) -> User:
        user = await self._users.get_by_username(username)
        if user is None:
            raise UserNotFound(f"no user named {username!r}")
        return user
