"""The outbox dispatcher: what the API could not enqueue (queue down) goes out from here."""

from __future__ import annotations

import datetime as dt

import structlog

from auth_service.domain.notifications.context import JobContext
from auth_service.domain.notifications.repository import NotificationRepository
from auth_service.lib.queue import JobName, JobQueue

__all__ = ["dispatch_outbox"]

log = structlog.get_logger()

# Younger rows are most likely still on their way from the API's own enqueue.
GRACE = dt.timedelta(seconds=30)
BATCH = 500


async def dispatch_outbox(ctx: JobContext) -> int:
    """Enqueue every unsent notification older than the grace period, under its stable job id
    (a job still queued or running under that id makes this a no-op). Returns how many."""
    queue: JobQueue = ctx["queue"]
    async with ctx["session_factory"]() as session:
        pending = await NotificationRepository(session=session).undelivered(dt.datetime.now(dt.UTC) - GRACE, BATCH)
    count = 0
    for note in pending:
        kwargs = {**note.payload, "notification_id": str(note.id)}
        if await queue.enqueue(JobName(note.job), f"notification:{note.id}", **kwargs):
            count += 1
    if pending:
        log.info("outbox.dispatched", pending=len(pending), enqueued=count)
    return count
