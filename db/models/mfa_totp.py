from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import BigInteger, ForeignKey, LargeBinary, func
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["MfaTotp"]


class MfaTotp(DefaultBase):
    """A user's TOTP authenticator, one at most: pending until `confirmed_at` (the first right
    code), then required at login. The secret is stored only encrypted (nonce || AES-GCM
    ciphertext under the `totp` purpose key, the user's id as associated data)."""

    __tablename__ = "mfa_totp"

    user_id: Mapped[UUID] = mapped_column(GUID(length=16), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    # The RFC 6238 step of the last accepted code: a code is accepted only for a later step, so
    # it is single use even if Redis (the fast replay mark) loses its keys.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
