from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column


class LoginRecord(UUIDBase):
    """One login attempt, successful or not."""

    __tablename__ = "login_records"
    __table_args__ = (
        Index("ix_login_records_user_id_login_timestamp", "user_id", "login_timestamp"),
        Index("ix_login_records_ip_address_login_timestamp", "ip_address", "login_timestamp"),
    )

    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    # The name that was typed, so reports can show attacks on unknown accounts.
    username: Mapped[str] = mapped_column(String(255))
    ip_address: Mapped[str] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    success: Mapped[bool] = mapped_column(Boolean)
    login_timestamp: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now(), index=True
    )
    failure_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
