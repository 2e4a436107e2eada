"""Self-registration (REGISTRATION_ENABLED): a new, unverified account and its verification link.

A taken username is 409 CONFLICT (usernames are public in this product: they are what people
sign in with). Everything that depends on the address happens after the response is sent
(`complete`), so a taken address answers exactly like a new one: 202, the same body, the same
time; its owner gets a "someone tried to sign up with your address" mail. The API never says
which addresses have accounts.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import msgspec
import structlog
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.recovery import account_mail
from auth_service.domain.users.schemas import InvalidUserData, UserCreate, stored_email
from auth_service.domain.users.service import UserExistsError
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.queue import QueuedJob
from db.models import identity_key
from db.sql import users
from observability.metrics import record_registration

__all__ = ["Prepared", "Registration"]

log = structlog.get_logger()


class Prepared(NamedTuple):
    username: str
    email: str
    password_hash: str


class Registration:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        links: AccountLinks,
        actor: Actor | None = None,
    ) -> None:
        self._actor = actor or Actor()
        self._session = session
        self._hasher = hasher
        self._policy = policy
        self._links = links

    async def prepare(self, username: str, email: str, password: str) -> Prepared:
        """Everything that decides the answer, the same work for every address: validation, the
        policy, the username check and the hash.

        Raises:
            InvalidUserData, PasswordPolicyError: the input is refused (400).
            UserExistsError: the username is taken (409).
        """
        try:
            data = msgspec.convert({"username": username, "email": email, "password": password}, UserCreate)
        except msgspec.ValidationError as exc:
            raise InvalidUserData.from_validation(exc) from None
        address = stored_email(data.email)
        self._policy.check(data.password, username=data.username, email=address)
        u = users.c
        taken = await self._session.execute(select(u.id).where(u.username_key == identity_key(data.username)))
        exists = taken.first() is not None
        await self._session.rollback()  # no transaction open while hashing
        if exists:
            raise UserExistsError("that username is taken")
        password_hash = await self._hasher.hash(data.password)
        return Prepared(data.username, address, password_hash)

    async def complete(self, prepared: Prepared) -> QueuedJob | None:
        """After the response: the account and its verification link, or, when the address has an
        account, a "someone tried to sign up" mail to its owner. None: the name was taken meanwhile."""
        u = users.c
        owner = (
            await self._session.execute(select(u.id).where(u.email_key == identity_key(prepared.email)))
        ).scalar_one_or_none()
        if owner is not None:
            statement, job = account_mail(owner, "signup_attempt", {})
            await self._session.execute(statement)
            await self._session.commit()
            record_registration("address_taken")
            log.info("registration.address_taken", user_id=str(owner))
            return job
        user_id = uuid.uuid4()
        try:
            await self._session.execute(
                insert(users).values(
                    id=user_id,
                    username=prepared.username,
                    email=prepared.email,
                    username_key=identity_key(prepared.username),
                    email_key=identity_key(prepared.email),
                    password_hash=prepared.password_hash,
                    roles=[],
                    is_active=True,
                    email_verified=False,
                )
            )
            job = await EmailVerification(self._session, self._links).link(user_id, prepared.email)
            await record(self._session, self._actor.as_user(user_id), AuditEntry("account.register", user_id))
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()  # the same name or address was registered meanwhile
            log.info("registration.lost_race")
            return None
        record_registration("created")
        log.info("registration.created", user_id=str(user_id))
        return job
