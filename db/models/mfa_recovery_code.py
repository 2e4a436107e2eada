from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["MfaRecoveryCode"]


class MfaRecoveryCode(UUIDBase):
    """One single-use recovery code, stored only as its HMAC (lib/crypto/recovery_codes.py);
    `used_at` is set once, by the one request that spends it. A new set replaces the old rows."""

    __tablename__ = "mfa_recovery_codes"
    # Also the index of a user's codes (user_id is its first column): no second one is needed.
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_mfa_recovery_codes_user_id_code_hash"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
