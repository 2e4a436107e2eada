"""User management: creation with the password policy, deactivation, password change."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from typing import Any

import msgspec
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy, PasswordPolicyError
from auth_service.domain.users.recovery import account_mail
from auth_service.domain.users.repository import UserRepository
from auth_service.domain.users.schemas import Email, UserCreate, UserRead
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.errors import Conflict, InvalidInput, NotFound
from auth_service.lib.queue import QueuedJob
from db.models import User, identity_key

__all__ = [
    "InvalidUserData",
    "PasswordPolicyError",
    "UserExistsError",
    "UserNotFound",
    "UserService",
    "check_password_policy",
]


class UserExistsError(Conflict):
    """A user with that username or e-mail already exists."""


class InvalidUserData(InvalidInput):
    """A username, e-mail or role that its schema refuses; str() says which rule, in words."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)

    @classmethod
    def from_validation(cls, exc: msgspec.ValidationError) -> InvalidUserData:
        # msgspec says "Expected `str` matching regex '…' - at `$.email`": name the field and its rule.
        match = re.search(r"at `\$\.(\w+)", str(exc))
        field = match.group(1) if match else "body"
        return cls(field, _FIELD_RULES.get(field, str(exc).split(" - at ")[0]))


_FIELD_RULES = {
    "username": "a username is 3-64 characters: letters, digits and . _ @ + -",
    "email": "not an e-mail address (expected one like name@example.com, at most 255 characters)",
    "roles": "a role is a lowercase name: a letter, then up to 63 letters, digits, _ or -",
    "password": "a password is a string",
}


class _EmailOnly(msgspec.Struct):
    email: Email


class UserNotFound(NotFound):
    """No user by that name (or it was deleted meanwhile)."""


def check_password_policy(password: str, username: str, email: str = "") -> None:
    """The default policy (PasswordPolicy()); raises PasswordPolicyError with the rule that failed."""
    PasswordPolicy().check(password, username=username, email=email)


def _read(user: User) -> UserRead:
    return UserRead(str(user.id), user.username, user.email, list(user.roles or []), user.is_active)


class UserService:
    """Creates and changes users; commits its own session."""

    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        revocation: RevocationStore,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self._policy = policy or PasswordPolicy()
        self._session = session
        self._revocation = revocation
        self._users = UserRepository(session=session)
        self._hasher = hasher

    async def create(self, data: UserCreate) -> UserRead:
        """Create a user.

        Raises:
            InvalidUserData: username, e-mail or roles malformed.
            PasswordPolicyError: the password breaks the policy.
            UserExistsError: the username or e-mail is taken.
        """
        try:
            data = msgspec.convert(msgspec.to_builtins(data), UserCreate)  # re-validates constraints
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        self._policy.check(data.password, username=data.username, email=data.email)
        if await self._users.exists_username_or_email(data.username, data.email):
            raise UserExistsError("a user with that username or e-mail already exists")
        user = User(
            username=data.username,
            email=unicodedata.normalize("NFKC", data.email),
            password_hash=await self._hasher.hash(data.password),
            roles=sorted(set(data.roles)),
            is_active=True,
        )
        try:
            await self._users.add(user)
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            # The same name was created meanwhile: the unique keys have the last word.
            await self._session.rollback()
            raise UserExistsError("a user with that username or e-mail already exists") from None
        return _read(user)

    async def get_by_username(self, username: str) -> UserRead | None:
        user = await self._users.get_by_username(username)
        return _read(user) if user else None

    async def list_users(self, limit: int = 1000, offset: int = 0) -> list[UserRead]:
        return [_read(user) for user in await self._users.listing(limit, offset)]

    async def show(self, username: str) -> UserRead:
        """One user by name.

        Raises:
            UserNotFound: no such user.
        """
        return _read(await self._require(username))

    async def count_admins(self) -> int:
        return await self._users.count_admins()

    async def set_active(self, username: str, active: bool) -> UserRead:
        """Enable or disable a user; disabling kills every token at once.

        Either way the user's cached revocation state is dropped (revocation.py), so Redis
        never answers from a state that PostgreSQL no longer has.

        Raises:
            UserNotFound: no such user.
            RedisError: Redis could not be told; nothing changed.
        """
        user = await self._require(username)
        await self._revocation.lock(self._session, user.id)
        await self._users.set_active(user.id, active)
        if not active:
            await self._revocation.revoke_everything(self._session, user.id)
        await self._revocation.commit(self._session, user.id)
        return await self._read_again(user.id)

    async def set_password(self, username: str, password: str) -> UserRead:
        """Change a password (policy applies); every existing token dies.

        Raises:
            UserNotFound: no such user.
            PasswordPolicyError: the password breaks the policy.
            RedisError: Redis could not be told; nothing changed.
        """
        user = await self._require(username)
        self._policy.check(password, username=user.username, email=user.email)
        password_hash = await self._hasher.hash(password)
        await self._revocation.lock(self._session, user.id)
        await self._users.set_password_hash(user.id, password_hash)
        await self._revocation.revoke_everything(self._session, user.id)
        await self._revocation.commit(self._session, user.id)
        return await self._read_again(user.id)

    async def change_own_password(
        self, user_id: uuid.UUID, new_password: str, checked_hash: str | None = None
    ) -> QueuedJob:
        """The owner's change (their current password already checked): policy, new hash, every
        token of the user dies, and a "password changed" mail, in one transaction.

        Raises:
            UserNotFound: the user is gone or was deactivated meanwhile.
            PasswordPolicyError: the new password breaks the policy (nothing changed).
            TokenRevoked: the password changed meanwhile (`checked_hash` is no longer the stored one).
            ServiceUnavailable: Redis could not be told; nothing changed.
        """
        found = await self._session.execute(
            select(User.username, User.email).where(User.id == user_id, User.is_active.is_(True))
        )
        row = found.first()
        await self._session.rollback()  # no transaction open while hashing
        if row is None:
            raise UserNotFound("the user was deleted or deactivated meanwhile")
        self._policy.check(new_password, username=row.username, email=row.email, field="new_password")
        password_hash = await self._hasher.hash(new_password)
        state = await self._revocation.lock(self._session, user_id)
        if state is None or not state.is_active:
            await self._session.rollback()
            raise UserNotFound("the user was deleted or deactivated meanwhile")
        await self._users.set_password_hash(user_id, password_hash)
        await self._revocation.revoke_everything(self._session, user_id)
        now = dt.datetime.now(dt.UTC)
        statement, job = account_mail(
            user_id, "password_changed", {"via": "change", "timestamp": f"{now:%Y-%m-%d %H:%M:%S}"}
        )
        await self._session.execute(statement)
        await self._revocation.commit(self._session, user_id)
        return job

    async def change_own_email(self, user_id: uuid.UUID, new_email: str, links: AccountLinks) -> list[QueuedJob]:
        """The owner's new address (their current password already checked): unverified until its
        link is used; the old address is told. Returns the two mails' jobs.

        Raises:
            InvalidUserData: not an e-mail address.
            UserExistsError: another account has that address (409).
            UserNotFound: the user is gone or was deactivated meanwhile.
        """
        try:
            msgspec.convert({"email": new_email}, _EmailOnly)
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        email = unicodedata.normalize("NFKC", new_email)
        state = await self._revocation.lock(self._session, user_id)
        old = (await self._session.execute(select(User.email).where(User.id == user_id))).scalar_one_or_none()
        if state is None or not state.is_active or old is None:
            await self._session.rollback()
            raise UserNotFound("the user was deleted or deactivated meanwhile")
        if identity_key(old) == identity_key(email):
            await self._session.rollback()
            return []  # the same address: nothing changes
        try:
            await self._users.set_email(user_id, email)
            verify = await EmailVerification(self._session, links).link(user_id, email)
            now = dt.datetime.now(dt.UTC)
            statement, notice = account_mail(
                user_id, "email_changed", {"to": old, "timestamp": f"{now:%Y-%m-%d %H:%M:%S}"}
            )
            await self._session.execute(statement)
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()
            raise UserExistsError("another account has that e-mail address") from None
        return [verify, notice]

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
