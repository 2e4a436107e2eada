from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Boolean, ForeignKey, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["WebAuthnCredential"]


class WebAuthnCredential(UUIDBase):
    """A passkey (WebAuthn credential) of a user: its public key (COSE), never anything secret.
    `credential_id` is unique across users: a passwordless login finds its user by it."""

    __tablename__ = "webauthn_credentials"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The authenticator's counter at the last accepted assertion; a lower one is a clone (0 and 0: it never counts).
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    aaguid: Mapped[str] = mapped_column(String(36))  # the authenticator model; zeros with attestation "none"
    transports: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list, server_default=text("'{}'"))
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
