"""The one job hand-off (lib/jobs.py): a job added to a session is enqueued when its transaction
commits, never when it rolls back, and a handler never enqueues by hand."""

from __future__ import annotations

import asyncio
import pathlib
import uuid

from arq import create_pool
from arq.connections import RedisSettings
from sqlalchemy import text

from auth_service.container import Resources
from auth_service.lib.jobs import add_jobs, drain
from auth_service.lib.queue import JobName, QueuedJob
from auth_service.settings import Settings


def _job() -> QueuedJob:
    return QueuedJob(JobName.SEND_ACCOUNT_EMAIL, f"notification:{uuid.uuid4()}", {"user_id": "u"})


async def test_a_job_is_enqueued_at_its_commit_and_dropped_with_its_rollback(settings: Settings) -> None:
    resources = Resources(settings)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis.queue_url))
    committed, rolled_back, second = _job(), _job(), _job()
    try:
        async with resources.session_factory() as session:
            await session.execute(text("SELECT 1"))
            add_jobs(session, committed)
            await drain()
            assert await pool.queued_jobs() == []  # nothing before the commit
            await session.commit()
            await drain()
            add_jobs(session, rolled_back)
            await session.rollback()
            add_jobs(session, second)  # the next transaction of the same session
            await session.commit()
            await drain()
        queued = {job.job_id for job in await pool.queued_jobs()}
        assert queued == {committed.job_id, second.job_id}
    finally:
        await resources.close()
        await pool.aclose()


def test_no_handler_or_service_enqueues_by_hand() -> None:
    root = pathlib.Path(__file__).resolve().parents[3] / "auth_service"
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name not in ("queue.py", "jobs.py", "outbox.py")
        and ("enqueue_all(" in path.read_text() or ".enqueue(" in path.read_text())
    ]
    assert offenders == []


def test_drain_waits_for_its_own_loops_enqueues_and_lets_a_closed_loops_go() -> None:
    """A test's loop may close with an enqueue still pending (its server stopped mid-request):
    the next loop's drain() must neither await it (another loop's future) nor wait forever."""
    from auth_service.lib import jobs

    async def stuck() -> None:
        await asyncio.sleep(3600)

    old = asyncio.new_event_loop()
    left = old.create_task(stuck())
    jobs._running.add(left)
    old.run_until_complete(asyncio.sleep(0))
    old.close()
    done: list[str] = []

    async def mine() -> None:
        await asyncio.sleep(0.05)
        done.append("enqueued")

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(mine())
        jobs._running.add(task)
        task.add_done_callback(jobs._running.discard)
        await asyncio.wait_for(drain(), 5)

    asyncio.run(run())
    assert done == ["enqueued"]
    assert left not in jobs._running
