from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column


class LoginRecord(UUIDBase):
    """One login attempt, successful or not."""

    __tablename__ = "login_records"
    # One index per filter of the admin listing (newest first, keyset on (login_timestamp, id)):
    # a page is one index range scan whatever the table's size or the page's depth.
    __table_args__ = (
        Index("ix_login_records_at_id", "login_timestamp", "id"),
        Index("ix_login_records_user_id_at_id", "user_id", "login_timestamp", "id"),
        Index("ix_login_records_ip_address_at_id", "ip_address", "login_timestamp", "id"),
        Index("ix_login_records_username_at_id", "username", "login_timestamp", "id"),
        Index(
            "ix_login_records_failures_at_id",
            "login_timestamp",
            "id",
            postgresql_where=text("NOT success"),
        ),
    )

    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    # The name that was typed, so reports can show attacks on unknown accounts.
    username: Mapped[str] = mapped_column(String(255))
    ip_address: Mapped[str] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    success: Mapped[bool] = mapped_column(Boolean)
    login_timestamp: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    failure_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
