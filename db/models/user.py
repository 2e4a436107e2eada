from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from typing import Any

from advanced_alchemy.base import UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["User", "identity_key", "owns_its_address", "unclaimed_email_key"]


def identity_key(value: str) -> str:
    """The form two names or addresses are compared in: NFKC, then case-folded (Unicode's
    NFKC_Casefold, approximately). Computed in Python, never by PostgreSQL's lower(), which
    disagrees with Python on characters such as `İ` and would let a duplicate past the check."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def unclaimed_email_key(user_id: uuid.UUID) -> str:
    """The email_key of an account that holds no address of its own: a sign-up whose address
    is another account's (it shows the address it was given, but never claims or receives it).
    Unique, and never the key of an address: it has no `@`, which every address and its key have."""
    return f"unclaimed:{user_id}"


def owns_its_address(email_key: str) -> bool:
    """Whether the account's `email` is its own (mail for the account may go there)."""
    return "@" in email_key


def _key_of(column: str) -> Any:
    def default(context: Any) -> str:
        return identity_key(str(context.get_current_parameters()[column]))

    return default


class User(UUIDAuditBase):
    """An account that can log in."""

    __tablename__ = "users"
    # The admin listing's filters (newest first, keyset on (created_at, id)): a prefix of the
    # name or address (LIKE 'q%' needs the pattern operator class), a role, the inactive ones.
    __table_args__ = (
        Index("ix_users_created_at_id", "created_at", "id"),
        Index("ix_users_username_key_prefix", "username_key", postgresql_ops={"username_key": "varchar_pattern_ops"}),
        Index("ix_users_email_key_prefix", "email_key", postgresql_ops={"email_key": "varchar_pattern_ops"}),
        Index("ix_users_roles", "roles", postgresql_using="gin"),
        Index("ix_users_inactive_created_at_id", "created_at", "id", postgresql_where=text("NOT is_active")),
    )

    username: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255))
    # Uniqueness and lookups go through these (identity_key of the column above), never lower().
    username_key: Mapped[str] = mapped_column(String(255), unique=True, default=_key_of("username"))
    email_key: Mapped[str] = mapped_column(String(255), unique=True, default=_key_of("email"))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list, server_default=text("'{}'"))
    # Every token issued before this instant is dead: logout everywhere, deactivation, password change.
    tokens_valid_after: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
