"""The owner's passkeys: registration (options, then the browser's answer), list, rename, remove.

A registration is one pending ceremony per user in Redis (CEREMONY_TTL_SECONDS, taken back with
GETDEL: single-use): new options replace earlier ones, so the answer always matches the last
options the user asked for. Adding and removing a passkey each write their audit event and the
user's mail in the transaction of the change.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.passkey_store import PasskeyRow, PasskeyStore
from auth_service.domain.auth.passkeys import RelyingParty
from auth_service.domain.users.recovery import write_mail
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.webauthn import WebAuthnError, registration_options, verify_registration
from auth_service.lib.errors import Conflict, InvalidInput, NotFound
from auth_service.lib.redis.ceremonies import Ceremony, CeremonyStore
from observability.metrics import record_passkey_registration

__all__ = ["DEFAULT_NAME", "MAX_PASSKEYS", "PasskeyEnrolment", "RegistrationOptions"]

log = structlog.get_logger()

MAX_PASSKEYS = 20  # per user: enough for every device one owns, and a bound on the rows and the options
DEFAULT_NAME = "Passkey"
_KIND = "register"


class RegistrationOptions(NamedTuple):
    public_key: dict[str, Any]
    expires_in: int


def _stamp(now: dt.datetime) -> str:
    return f"{now:%Y-%m-%d %H:%M:%S}"


class PasskeyEnrolment:
    """One user's passkeys, on the request's session (each change commits it).

    Args:
        session: the request's session.
        ceremonies: where a registration's challenge waits for the browser's answer.
        rp: the relying party.
        actor: who acts (the owner, from their request), for the audit events.
    """

    def __init__(self, session: AsyncSession, ceremonies: CeremonyStore, rp: RelyingParty, actor: Actor) -> None:
        self._session = session
        self._store = PasskeyStore(session)
        self._ceremonies = ceremonies
        self._rp = rp
        self._actor = actor

    async def options(self, user_id: uuid.UUID, username: str, name: str | None) -> RegistrationOptions:
        """Options for `navigator.credentials.create()` (attestation none, user verification
        preferred, a discoverable credential required, the user's passkeys excluded), kept as the
        user's one pending registration.

        Raises:
            InvalidInput: the user has MAX_PASSKEYS already.
        """
        known = await self._store.known(user_id)
        await self._session.commit()
        if len(known) >= MAX_PASSKEYS:
            raise InvalidInput("credential", f"at most {MAX_PASSKEYS} passkeys per account", reason="too_many")
        options = registration_options(
            rp_id=self._rp.rp_id,
            rp_name=self._rp.rp_name,
            user_id=user_id.bytes,  # the user handle a passwordless login returns; never an address
            user_name=username,
            exclude=known,
            resident_key="required",  # a passkey: usable without typing a username
        )
        pending = Ceremony(options.challenge, str(user_id), name)
        await self._ceremonies.put(_KIND, str(user_id), str(user_id), pending)
        return RegistrationOptions(options.public_key, self._ceremonies.ttl)

    async def register(self, user_id: uuid.UUID, credential: dict[str, Any], name: str | None) -> PasskeyRow:
        """Check the browser's answer to the pending options and store the passkey.

        Raises:
            InvalidInput: no pending registration (used, expired, or never asked for), or an answer
                that does not verify (challenge, origin, RP id, signature, algorithm, format).
            Conflict: that credential is registered already.
        """
        pending = await self._ceremonies.take(_KIND, str(user_id), str(user_id))
        if pending is None or pending.user_id != str(user_id):
            raise InvalidInput("credential", "no pending registration: ask for new options", reason="expired")
        try:
            verified = verify_registration(
                credential=credential,
                expected_challenge=pending.challenge,
                rp_id=self._rp.rp_id,
                origins=self._rp.origins,
            )
        except WebAuthnError as exc:
            log.info("passkey.registration_refused", user_id=str(user_id), why=str(exc))
            raise InvalidInput("credential", "the passkey could not be verified", reason="invalid") from None
        chosen = name or pending.name or DEFAULT_NAME
        try:
            if await self._store.count(user_id) >= MAX_PASSKEYS:
                raise InvalidInput("credential", f"at most {MAX_PASSKEYS} passkeys per account", reason="too_many")
            row = await self._store.add(user_id, verified, chosen)
        except IntegrityError:
            await self._session.rollback()
            raise Conflict("this passkey is registered already") from None
        except InvalidInput:
            await self._session.rollback()
            raise
        now = dt.datetime.now(dt.UTC)
        await write_mail(self._session, user_id, "passkey_added", {"name": chosen, "timestamp": _stamp(now)})
        details = {"credential": str(row.id), "name": chosen, "backup_eligible": verified.backup_eligible}
        await record(self._session, self._actor.as_user(user_id), AuditEntry("mfa.passkey.add", user_id, details))
        await self._session.commit()
        record_passkey_registration()
        log.info("passkey.added", user_id=str(user_id), credential=str(row.id))
        return row

    async def listed(self, user_id: uuid.UUID) -> list[PasskeyRow]:
        rows = await self._store.listed(user_id)
        await self._session.commit()
        return rows

    async def rename(self, user_id: uuid.UUID, passkey_id: uuid.UUID, name: str) -> PasskeyRow:
        """Raises: NotFound: not one of the user's passkeys."""
        row = await self._store.rename(user_id, passkey_id, name)
        if row is None:
            await self._session.rollback()
            raise NotFound("no such passkey")
        await self._session.commit()
        return row

    async def remove(self, user_id: uuid.UUID, passkey_id: uuid.UUID) -> None:
        """Raises: NotFound: not one of the user's passkeys (someone else's or unknown)."""
        name = await self._store.remove(user_id, passkey_id)
        if name is None:
            await self._session.rollback()
            raise NotFound("no such passkey")
        now = dt.datetime.now(dt.UTC)
        await write_mail(self._session, user_id, "passkey_removed", {"name": name, "timestamp": _stamp(now)})
        details = {"credential": str(passkey_id), "name": name}
        await record(self._session, self._actor.as_user(user_id), AuditEntry("mfa.passkey.remove", user_id, details))
        await self._session.commit()
        log.info("passkey.removed", user_id=str(user_id), credential=str(passkey_id))
