from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["AuditEvent"]


class AuditEvent(UUIDBase):
    """One administrative or security-relevant action, written in the transaction of the change it
    records. Append-only: a trigger (migration 0006) refuses UPDATE and DELETE. No foreign keys:
    an event outlives its actor and its target (a deleted user's events stay as they were)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at_id", "at", "id"),
        Index("ix_audit_events_actor_id_at_id", "actor_id", "at", "id"),
        Index("ix_audit_events_action_at_id", "action", "at", "id"),
        Index("ix_audit_events_target_id_at_id", "target_id", "at", "id"),
    )

    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), server_default=func.now())
    actor_id: Mapped[UUID | None] = mapped_column(GUID(length=16), nullable=True)  # None: the CLI
    actor_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
