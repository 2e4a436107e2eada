from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column


class TokenBlacklist(UUIDBase):
    """An access token revoked before its expiry (logout)."""

    __tablename__ = "token_blacklist"

    token_jti: Mapped[str] = mapped_column(String(255), unique=True)
    # Lets a cold Redis be refilled with one user's revocations at once.
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    blacklisted_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
