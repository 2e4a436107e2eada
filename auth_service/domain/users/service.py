"""The owner's changes to their account: a new password, a new e-mail address."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid

from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.revocation import RevocationStore, UserState
from auth_service.domain.users.policy import PasswordPolicy, PasswordPolicyError
from auth_service.domain.users.recovery import RESET, end_links, write_mail
from auth_service.domain.users.repository import UserRepository
from auth_service.domain.users.schemas import InvalidUserData, UserExistsError, UserNotFound, stored_email
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.audit import CLI, Actor, AuditEntry, record
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.errors import InvalidCredentials
from auth_service.settings import LinkSettings
from db.models import User, identity_key, owns_its_address

__all__ = [
    "CredentialsChanged",
    "InvalidUserData",
    "PasswordPolicyError",
    "UserExistsError",
    "UserNotFound",
    "UserService",
    "check_password_policy",
]


class CredentialsChanged(InvalidCredentials):
    """The password checked for an owner's change is no longer the stored one: another change or
    a reset committed in between. Refused like a login that raced a password change (401
    AUTH_INVALID_CREDENTIALS, nothing written): the caller proved a password that is gone."""


def check_password_policy(password: str, username: str, email: str = "") -> None:
    """The default policy (PasswordPolicy()); raises PasswordPolicyError with the rule that failed."""
    PasswordPolicy().check(password, username=username, email=email)


class UserService:
    """The owner's own changes (password, e-mail address), each checked against the password the
    owner proved, in one transaction with its audit event; commits its own session."""

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

    async def change_own_password(self, user_id: uuid.UUID, new_password: str, checked_hash: str) -> None:
        """The owner's change (their current password already checked against `checked_hash`):
        policy, new hash, every token and reset link of the user dies, and a "password changed"
        mail, in one transaction.

        Raises:
            UserNotFound: the user is gone or was deactivated meanwhile.
            PasswordPolicyError: the new password breaks the policy (nothing changed).
            CredentialsChanged: the password changed meanwhile (`checked_hash` is no longer the
                stored one); nothing changed.
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
        await self._as_checked(state, user_id, checked_hash)
        await self._users.set_password_hash(user_id, password_hash)
        await end_links(self._session, user_id, [RESET])  # a reset link would undo the change
        await self._revocation.revoke_everything(self._session, user_id)
        now = dt.datetime.now(dt.UTC)
        await write_mail(
            self._session, user_id, "password_changed", {"via": "change", "timestamp": f"{now:%Y-%m-%d %H:%M:%S}"}
        )
        await record(self._session, self._actor.as_user(user_id), AuditEntry("password.change", user_id))
        await self._revocation.commit(self._session, user_id)

    async def change_own_email(
        self, user_id: uuid.UUID, new_email: str, links: AccountLinks, checked_hash: str
    ) -> None:
        """The owner's new address (their current password already checked against
        `checked_hash`): unverified until its link is used; every live link of the account (all
        mailed to the old address) dies; the old address is told (both mails go with the commit).

        Raises:
            InvalidUserData: not an e-mail address.
            UserExistsError: another account has that address (409).
            UserNotFound: the user is gone or was deactivated meanwhile.
            CredentialsChanged: the password changed meanwhile; nothing changed.
        """
        email = stored_email(new_email)
        state = await self._revocation.lock(self._session, user_id)
        old, old_key = await self._as_checked(state, user_id, checked_hash)
        if identity_key(old) == identity_key(email):
            await self._session.rollback()
            return  # the same address: nothing changes
        try:
            await self._users.set_email(user_id, email)
            await end_links(self._session, user_id)  # every live link was mailed to the old address
            await EmailVerification(self._session, links, self._lifetimes).link(user_id, email)
            if owns_its_address(old_key):  # an unclaimed sign-up's address is another account's: not told
                now = dt.datetime.now(dt.UTC)
                await write_mail(
                    self._session, user_id, "email_changed", {"to": old, "timestamp": f"{now:%Y-%m-%d %H:%M:%S}"}
                )
            await record(self._session, self._actor.as_user(user_id), AuditEntry("email.change", user_id))
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()
            raise UserExistsError("another account has that e-mail address") from None

    async def _as_checked(self, state: UserState | None, user_id: uuid.UUID, checked_hash: str) -> tuple[str, str]:
        """After the revocation protocol's lock (`state`), whether the user is still as its owner
        proved it with `checked_hash`; returns the account's address and its identity key.

        The password was checked before the lock (hashing holds no transaction), so another
        change or a reset may have committed since: compared here, under the lock, the stored
        hash is the one every later writer will see, and of two changes proved by the same
        password only the first lands (as `record_success` refuses a login that raced one).

        Raises:
            UserNotFound: the user is gone or deactivated.
            CredentialsChanged: the stored hash is no longer `checked_hash`.
        """
        stmt = select(User.email, User.email_key, User.password_hash).where(User.id == user_id)
        row = (await self._session.execute(stmt)).first()
        if state is None or not state.is_active or row is None:
            await self._session.rollback()
            raise UserNotFound("the user was deleted or deactivated meanwhile")
        if not hmac.compare_digest(row.password_hash.encode(), checked_hash.encode()):
            await self._session.rollback()
            raise CredentialsChanged
        return str(row.email), str(row.email_key)
