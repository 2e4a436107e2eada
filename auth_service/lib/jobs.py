"""The one job hand-off: a service adds the jobs a change decides to the session that writes
the change; they are enqueued when that transaction commits and dropped if it rolls back.

No handler enqueues: `add_jobs(session, job)` beside the outbox row's INSERT is all a service
does (the outbox row is the durable record; the job only makes delivery prompt, and the outbox
dispatcher catches up on any job that was never enqueued). The queue is bound to the sessions
of a session factory once (`bind_queue`, by the container), so services never carry it.

Enqueueing runs as a task of its own, started at the commit: the request goes on (a login's
answer never waits for the queue; `JobQueue.enqueue` never raises), and `drain()` at shutdown
waits for the last ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from auth_service.lib.queue import JobQueue, QueuedJob, enqueue_all

__all__ = ["add_jobs", "bind_queue", "drain"]

log = structlog.get_logger()
_PENDING = "jobs.pending"
_QUEUE = "jobs.queue"
_running: set[asyncio.Task[None]] = set()


def bind_queue(session_factory: Callable[[], AsyncSession], queue: JobQueue) -> None:
    """Every session `session_factory` makes from now on enqueues its committed jobs on `queue`."""
    kw: dict[str, Any] | None = getattr(session_factory, "kw", None)
    if kw is None:
        raise TypeError("bind_queue needs a sessionmaker (its `kw` carries the sessions' info)")
    kw["info"] = {**(kw.get("info") or {}), _QUEUE: queue}


def add_jobs(session: AsyncSession, *jobs: QueuedJob) -> None:
    """Enqueue `jobs` once the session's current transaction commits (never if it rolls back)."""
    sync = session.sync_session
    if not sync.in_transaction():
        sync.begin()  # so that a rollback before any statement still ends (and drops) them
    sync.info.setdefault(_PENDING, []).extend(jobs)


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    jobs: list[QueuedJob] = session.info.pop(_PENDING, [])
    queue: JobQueue | None = session.info.get(_QUEUE)
    if not jobs:
        return
    if queue is None:  # a session without a queue (a script): the outbox dispatcher delivers them
        log.info("jobs.left_to_the_outbox", jobs=len(jobs))
        return
    task = asyncio.get_running_loop().create_task(enqueue_all(queue, jobs))
    _running.add(task)
    task.add_done_callback(_running.discard)


# after_soft_rollback, not after_rollback: the latter fires only when a connection was used, and a
# transaction that added its jobs before its first statement must drop them too.
@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_PENDING, None)


async def drain() -> None:
    """Wait for the enqueues already started on this event loop (shutdown, tests). A task of
    another loop cannot be awaited here: one whose loop is closed never finishes, and is let go."""
    loop = asyncio.get_running_loop()
    _running.difference_update([task for task in _running if task.get_loop().is_closed()])
    while mine := [task for task in _running if task.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)
