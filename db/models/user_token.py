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
    # The identity key of the address the link was mailed to: it is valid only while that is the
    # account's address (a reset or verification proves that mailbox, no other). Null (rows of
    # tests or hand-made ones) matches no address, so such a link is never valid.
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
