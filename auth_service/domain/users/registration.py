"""Self-registration (REGISTRATION_ENABLED): a new, unverified account and its verification link.

A taken username is 409 CONFLICT (usernames are public in this product: they are what people
sign in with). A taken e-mail address answers exactly like a new one (202, same body, and the
same work: the password is hashed either way) and its owner gets a "someone tried to sign up
with your address" mail, so the API never says which addresses have accounts.
"""

from __future__ import annotations

import unicodedata
import uuid

import msgspec
import structlog
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.recovery import account_mail
from auth_service.domain.users.schemas import UserCreate
from auth_service.domain.users.service import InvalidUserData, UserExistsError
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.queue import QueuedJob
from db.models import identity_key
from db.sql import users
from observability.metrics import record_registration

__all__ = ["Registration"]

log = structlog.get_logger()


class Registration:
    def __init__(
        self, session: AsyncSession, hasher: PasswordHasher, policy: PasswordPolicy, links: AccountLinks
    ) -> None:
        self._session = session
        self._hasher = hasher
        self._policy = policy
        self._links = links

    async def register(self, username: str, email: str, password: str) -> QueuedJob:
        """Create the account (or tell the address's owner); returns the mail's job.

        Raises:
            InvalidUserData, PasswordPolicyError: the input is refused (400).
            UserExistsError: the username is taken (409).
        """
        try:
            data = msgspec.convert({"username": username, "email": email, "password": password}, UserCreate)
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        self._policy.check(data.password, username=data.username, email=data.email)
        u = users.c
        taken = (
            await self._session.execute(
                select(u.username_key == identity_key(data.username), u.id).where(
                    (u.username_key == identity_key(data.username)) | (u.email_key == identity_key(data.email))
                )
            )
        ).all()
        await self._session.rollback()  # no transaction open while hashing
        if any(row[0] for row in taken):
            raise UserExistsError("that username is taken")
        password_hash = await self._hasher.hash(data.password)  # for a taken address too: the same time
        if taken:  # the address has an account: its owner hears of the attempt, nothing else happens
            statement, job = account_mail(taken[0].id, "signup_attempt", {})
            await self._session.execute(statement)
            await self._session.commit()
            record_registration("address_taken")
            log.info("registration.address_taken", user_id=str(taken[0].id))
            return job
        user_id = uuid.uuid4()
        try:
            await self._session.execute(
                insert(users).values(
                    id=user_id,
                    username=data.username,
                    email=unicodedata.normalize("NFKC", data.email),
                    username_key=identity_key(data.username),
                    email_key=identity_key(data.email),
                    password_hash=password_hash,
                    roles=[],
                    is_active=True,
                    email_verified=False,
                )
            )
            job = await EmailVerification(self._session, self._links).link(user_id, data.email)
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()  # the same name or address was registered meanwhile
            raise UserExistsError("that username is taken") from None
        record_registration("created")
        log.info("registration.created", user_id=str(user_id))
        return job
