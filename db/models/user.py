from __future__ import annotations

import datetime as dt

from advanced_alchemy.base import UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, Index, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column


class User(UUIDAuditBase):
    """An account that can log in."""

    __tablename__ = "users"
    __table_args__ = (
        # Usernames and e-mails are unique regardless of case; lookups use lower().
        Index("uq_users_username_lower", func.lower(text("username")), unique=True),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    username: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list, server_default=text("'{}'"))
    # Every token issued before this instant is dead: logout everywhere, deactivation, password change.
    tokens_valid_after: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
