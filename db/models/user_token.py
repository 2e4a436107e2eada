from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column


class UserToken(UUIDBase):
    """A single-use account link (password reset, e-mail verification, invitation), stored only
    as the SHA-256 of its token; `used_at` is set once, by the one request that spends it."""

    __tablename__ = "user_tokens"
    __table_args__ = (Index("ix_user_tokens_user_id_purpose", "user_id", "purpose"),)

    purpose: Mapped[str] = mapped_column(String(16))  # reset, verify, invite
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    # A verification link proves this address (its identity key): a later change makes it stale.
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
