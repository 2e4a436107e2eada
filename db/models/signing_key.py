from __future__ import annotations

import datetime as dt
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["SigningKey"]


class SigningKey(DefaultBase):
    """A managed signing key (ID tokens always; access tokens when JWT_ALGORITHM asks for it).

    Its life: `next` (published, not yet signing) until `activates_at`; `active` (signs) until a
    newer key activates; `retiring` (published, no longer signing) until `removes_at`, when the
    last token it signed has expired; then `removed` (unpublished, the private key erased). The
    private key is stored only encrypted: nonce || AES-GCM ciphertext of its PEM under the
    `signing-key-wrap` purpose key, the kid as associated data."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    private_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    activates_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    # When a newer key took over (it stopped signing), and when it leaves the JWKS.
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    removes_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
