"""The e-mail outbox: notifications written with what caused them, claimed and finished by the worker."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    bindparam,
    insert,
    select,
    update,
)

from db.models import Notification
from db.sql import notifications, param

__all__ = ["NotificationRepository", "OutboxRow"]


class OutboxRow(NamedTuple):
    """A notification to write in the same transaction as the login that caused it."""

    id: UUID
    kind: str
    job: str
    payload: dict[str, Any]


_INSERT_OUTBOX = insert(notifications).values(
    id=param("note_id", notifications.c.id),
    kind=bindparam("kind"),
    job=bindparam("job"),
    user_id=param("user_id", notifications.c.user_id),
    payload=param("payload", notifications.c.payload),
    # Python-side defaults are not applied inside a CTE: say it here.
    attempts=0,
)


class NotificationRepository(SQLAlchemyAsyncRepository[Notification]):
    model_type = Notification

    async def add_outbox(self, user_id: UUID, note: OutboxRow) -> None:
        params = {"note_id": note.id, "kind": note.kind, "job": note.job, "user_id": user_id, "payload": note.payload}
        await self.session.execute(_INSERT_OUTBOX, params)

    async def claim(self, notification_id: UUID, now: dt.datetime, lease: dt.timedelta) -> Notification | None:
        """Take the right to send, for `lease`; None when it was sent, dropped, or another worker holds it."""
        stmt = (
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.sent_at.is_(None),
                Notification.dropped_at.is_(None),
                (Notification.claimed_until.is_(None)) | (Notification.claimed_until < now),
            )
            .values(claimed_until=now + lease, attempts=Notification.attempts + 1)
            .returning(Notification)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def finish(self, notification_id: UUID, now: dt.datetime, *, sent: bool, error: str | None = None) -> None:
        values: dict[str, object] = {"claimed_until": None, "last_error": error}
        if sent:
            values["sent_at"] = now
        elif error is not None and error.startswith("permanent:"):
            values["dropped_at"] = now
        await self.session.execute(update(Notification).where(Notification.id == notification_id).values(**values))

    async def undelivered(self, created_before: dt.datetime, limit: int) -> list[Notification]:
        """Notifications still unsent (and not given up on) that were created before `created_before`."""
        stmt = (
            select(Notification)
            .where(
                Notification.sent_at.is_(None),
                Notification.dropped_at.is_(None),
                Notification.created_at < created_before,
            )
            .order_by(Notification.created_at)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def disavow(self, notification_id: UUID, user_id: UUID, now: dt.datetime) -> bool:
        """Use a notification's "this wasn't me" link once; False when already used or unknown."""
        stmt = (
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.user_id == user_id,
                Notification.disavowed_at.is_(None),
            )
            .values(disavowed_at=now)
        )
        return bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
