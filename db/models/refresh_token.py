from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column


class RefreshToken(UUIDBase):
    """One refresh token, stored only as its SHA-256; a family is one login session."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_user_id_issued_at", "user_id", "issued_at"),
        Index(
            "ix_refresh_tokens_live_by_user",
            "user_id",
            "issued_at",
            postgresql_where=text("spent_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[UUID] = mapped_column(index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    spent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True, index=True)
    replaced_by_id: Mapped[UUID | None] = mapped_column(nullable=True)
    # The session's device and start, written at login and copied to every successor.
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    session_started_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    # How the login was proven (RFC 8176 `amr`), copied to every successor: a refresh mints it again.
    amr: Mapped[list[str]] = mapped_column(ARRAY(String(8)), default=lambda: ["pwd"], server_default=text("'{pwd}'"))
    # A session opened through OAuth: the client it was granted to and the scopes granted (None:
    # a login of our own API), copied to every successor.
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scope: Mapped[str | None] = mapped_column(String(1024), nullable=True)
