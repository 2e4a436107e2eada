"""Self-registration (REGISTRATION_ENABLED): a new, unverified account and its verification link.

A taken username is 409 CONFLICT (usernames are public in this product: they are what people
sign in with). The account is written before the response, whatever the address: its INSERT,
which the unique username_key decides, is what reserves the name, so of two sign-ups with one
name at once the second is 409 (`prepare`). It is written holding no address of its own
(db.models.unclaimed_email_key) and claims the address only after the response is sent
(`complete`): a free address becomes the account's and gets the verification link; a taken
one stays unclaimed and its owner gets a "someone tried to sign up with your address" mail.
So the answer (202, the same body, the same time) and everything the person can do next (log
in with the password: 403 AUTH_EMAIL_UNVERIFIED, or in without REGISTRATION_REQUIRE_VERIFIED_EMAIL;
register the name again: 409; see the account) are the same whether or not the address had
an account. The API never says which addresses have accounts.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import msgspec
import structlog
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.recovery import write_mail
from auth_service.domain.users.schemas import InvalidUserData, UserCreate, stored_email
from auth_service.domain.users.service import UserExistsError
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.settings import LinkSettings
from db.models import identity_key, unclaimed_email_key
from db.sql import users
from observability.metrics import record_registration

__all__ = ["Prepared", "Registration"]

log = structlog.get_logger()


class Prepared(NamedTuple):
    """The account written before the response, and the address it asked for."""

    user_id: uuid.UUID
    email: str


class Registration:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        links: AccountLinks,
        lifetimes: LinkSettings,
        actor: Actor | None = None,
    ) -> None:
        self._lifetimes = lifetimes
        self._actor = actor or Actor()
        self._session = session
        self._hasher = hasher
        self._policy = policy
        self._links = links

    async def prepare(self, username: str, email: str, password: str) -> Prepared:
        """Everything that decides the answer, the same work for every address: validation, the
        policy, the hash, and the account under its name, holding no address yet.

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
        key = identity_key(data.username)
        taken = (await self._session.execute(select(u.id).where(u.username_key == key))).first() is not None
        await self._session.rollback()  # no transaction open while hashing
        if taken:  # answered before the hash; the INSERT below decides when the name was free here
            raise UserExistsError("that username is taken")
        password_hash = await self._hasher.hash(data.password)
        user_id = uuid.uuid4()
        try:
            await self._session.execute(
                insert(users).values(
                    id=user_id,
                    username=data.username,
                    email=address,  # shown as given; its key says the account does not own it yet
                    username_key=key,
                    email_key=unclaimed_email_key(user_id),
                    password_hash=password_hash,
                    roles=[],
                    is_active=True,
                    email_verified=False,
                )
            )
            await record(self._session, self._actor.as_user(user_id), AuditEntry("account.register", user_id))
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()  # the same name was registered meanwhile
            raise UserExistsError("that username is taken") from None
        return Prepared(user_id, address)

    async def complete(self, prepared: Prepared) -> None:
        """After the response: the account claims its address and gets the verification link,
        or, when the address is another account's, that account's owner gets a "someone tried to
        sign up" mail and this one stays without an address. None: the account is gone meanwhile."""
        u = users.c
        key = identity_key(prepared.email)
        owner = await self._owner(key)
        if owner is None:
            try:
                claimed = await self._session.execute(
                    update(users)
                    .where(u.id == prepared.user_id, u.email_key == unclaimed_email_key(prepared.user_id))
                    .values(email_key=key)
                    .returning(u.id)
                )
                if claimed.first() is None:
                    await self._session.rollback()
                    log.info("registration.account_gone", user_id=str(prepared.user_id))
                    return None
                await EmailVerification(self._session, self._links, self._lifetimes).link(
                    prepared.user_id, prepared.email
                )
                await self._session.commit()
            except (IntegrityError, RepositoryIntegrityError):
                await self._session.rollback()  # another account took the address meanwhile
                owner = await self._owner(key)
            else:
                record_registration("created")
                log.info("registration.created", user_id=str(prepared.user_id))
                return
        if owner is None:  # taken and let go again in between: leave this account without one
            return None
        await write_mail(self._session, owner, "signup_attempt", {})
        await self._session.commit()
        record_registration("address_taken")
        log.info("registration.address_taken", user_id=str(owner), account_id=str(prepared.user_id))
        return

    async def _owner(self, email_key: str) -> uuid.UUID | None:
        u = users.c
        found = await self._session.execute(select(u.id).where(u.email_key == email_key))
        owner: uuid.UUID | None = found.scalar_one_or_none()
        return owner
