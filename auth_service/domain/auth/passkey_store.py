"""The passkeys table (webauthn_credentials): every query of it, for enrolment (domain/account),
for assertions (passwordless login and, later, the second step) and for an admin reset.

Rows leave as plain values, never ORM objects. The public key is read only by `for_assertion`;
listings never carry it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import NamedTuple

from sqlalchemy import BigInteger, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.lib.crypto.webauthn import KnownCredential, NewCredential
from db.models import User, WebAuthnCredential

__all__ = ["PasskeyRow", "PasskeyStore", "StoredPasskey"]

_T = WebAuthnCredential


class PasskeyRow(NamedTuple):
    """A passkey as its owner sees it (no key material)."""

    id: uuid.UUID
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    backup_eligible: bool
    backed_up: bool
    transports: list[str]


class StoredPasskey(NamedTuple):
    """What checking an assertion needs: the stored key and counter, and whose it is."""

    id: uuid.UUID
    user_id: uuid.UUID
    public_key: bytes
    sign_count: int
    username: str
    is_active: bool


_LISTED = (_T.id, _T.name, _T.created_at, _T.last_used_at, _T.backup_eligible, _T.backed_up, _T.transports)


class PasskeyStore:
    """Queries of one session; the caller owns the transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def listed(self, user_id: uuid.UUID) -> list[PasskeyRow]:
        """The user's passkeys, oldest first."""
        stmt = select(*_LISTED).where(_T.user_id == user_id).order_by(_T.created_at, _T.id)
        return [PasskeyRow(*row) for row in await self._session.execute(stmt)]

    async def known(self, user_id: uuid.UUID) -> list[KnownCredential]:
        """The user's credential ids and transports (to exclude at registration, allow at assertion)."""
        stmt = select(_T.credential_id, _T.transports).where(_T.user_id == user_id).order_by(_T.created_at)
        return [
            KnownCredential(row.credential_id, tuple(row.transports or ())) for row in await self._session.execute(stmt)
        ]

    async def count(self, user_id: uuid.UUID) -> int:
        stmt = select(func.count()).select_from(_T).where(_T.user_id == user_id)
        return int((await self._session.execute(stmt)).scalar_one())

    async def add(self, user_id: uuid.UUID, credential: NewCredential, name: str) -> PasskeyRow:
        """Insert a verified registration (IntegrityError: that credential id is stored already)."""
        stmt = (
            insert(_T)
            .values(
                id=uuid.uuid4(),
                user_id=user_id,
                credential_id=credential.credential_id,
                public_key=credential.public_key,
                sign_count=credential.sign_count,
                aaguid=credential.aaguid,
                transports=list(credential.transports),
                backup_eligible=credential.backup_eligible,
                backed_up=credential.backed_up,
                name=name,
            )
            .returning(*_LISTED)
        )
        return PasskeyRow(*(await self._session.execute(stmt)).one())

    async def rename(self, user_id: uuid.UUID, passkey_id: uuid.UUID, name: str) -> PasskeyRow | None:
        """None when the passkey is not the user's (someone else's or unknown: the same answer)."""
        stmt = update(_T).where(_T.id == passkey_id, _T.user_id == user_id).values(name=name).returning(*_LISTED)
        row = (await self._session.execute(stmt)).first()
        return None if row is None else PasskeyRow(*row)

    async def remove(self, user_id: uuid.UUID, passkey_id: uuid.UUID) -> str | None:
        """Delete one of the user's passkeys; its name, or None when it is not the user's."""
        stmt = delete(_T).where(_T.id == passkey_id, _T.user_id == user_id).returning(_T.name)
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def remove_all(self, user_id: uuid.UUID) -> int:
        """Delete every passkey of the user (an admin's MFA reset); how many there were."""
        result = await self._session.execute(delete(_T).where(_T.user_id == user_id).returning(_T.id))
        return len(result.all())

    async def for_assertion(self, credential_id: bytes) -> StoredPasskey | None:
        """The credential an assertion names, with its user's name and state."""
        stmt = (
            select(_T.id, _T.user_id, _T.public_key, _T.sign_count, User.username, User.is_active)
            .join(User, User.id == _T.user_id)
            .where(_T.credential_id == credential_id)
        )
        row = (await self._session.execute(stmt)).first()
        return None if row is None else StoredPasskey(*row)

    async def spend(self, passkey_id: uuid.UUID, new_count: int, backed_up: bool, now: dt.datetime) -> bool:
        """Move the stored counter to `new_count`, only if that is still a step forward (or both are
        0, for authenticators that never count): of two assertions carrying the same or an older
        counter, only one lands, whatever the order; False for the other (a clone or a replay)."""
        new = literal(new_count, BigInteger)
        forward = or_(_T.sign_count < new, and_(new == 0, _T.sign_count == 0))
        stmt = (
            update(_T)
            .where(_T.id == passkey_id, forward)
            .values(sign_count=new_count, backed_up=backed_up, last_used_at=now)
        )
        return bool((await self._session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
