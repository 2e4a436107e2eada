"""Worker processes for real: an arq worker killed mid-job, and the Celery adapter on Redis and RabbitMQ."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.lib.queue import ArqQueue, CeleryQueue, JobName
from auth_service.settings import Settings
from db.models import Notification
from tests.conftest import PYTHON, TEST_SECRET, free_port
from tests.e2e.conftest import child_env, stop_process
from tests.factories import create_user
from tests.smtp import RecordingHandler, body_text, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server() as server:
        yield server


def _worker_env(settings: Settings, smtp_port: int, **extra: str) -> dict[str, str]:
    return child_env(
        DATABASE_URL=settings.database.owner_url,
        REDIS_URL=settings.redis.url,
        JWT_SECRET_KEY=TEST_SECRET,
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_STARTTLS="false",
        WORKER_METRICS_PORT=str(free_port()),
        **extra,
    )


async def _outbox_row(session: AsyncSession, user_id: Any) -> Notification:
    import uuid

    note = Notification(
        id=uuid.uuid4(),
        kind="login",
        job=JobName.SEND_LOGIN_NOTIFICATION_EMAIL.value,
        user_id=user_id,
        payload={"user_id": str(user_id), "ip_address": "192.0.2.1", "timestamp": "2026-11-28T10:30:00Z"},
    )
    session.add(note)
    await session.commit()
    return note


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


async def test_worker_killed_mid_job_runs_it_again_without_duplicating_the_mail(
    settings: Settings, tmp_path: Path, smtp: tuple[RecordingHandler, int], db_session: AsyncSession
) -> None:
    handler, port = smtp
    handler.stall_seconds = 60  # the first delivery hangs, then would be refused
    user = await create_user(settings, username="kim")
    note = await _outbox_row(db_session, user.id)
    queue = ArqQueue(settings.redis.url)
    assert await queue.enqueue(
        JobName(note.job), f"notification:{note.id}", notification_id=str(note.id), **note.payload
    )
    await queue.close()

    env = _worker_env(settings, port, WORKER_JOB_TIMEOUT="3")
    first = _spawn([PYTHON, "-m", "tasks"], env, tmp_path / "worker-1.log")
    deadline = time.monotonic() + 30
    while handler.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handler.attempts == 1, (tmp_path / "worker-1.log").read_text()
    first.send_signal(signal.SIGKILL)  # dies in the middle of the SMTP transaction
    first.wait(timeout=10)

    second = _spawn(
        [PYTHON, "-m", "tasks"], _worker_env(settings, port, WORKER_JOB_TIMEOUT="3"), tmp_path / "worker-2.log"
    )
    try:
        messages = handler.wait_for(1, timeout=60)  # arq hands the job over once the dead worker's lock expires
        time.sleep(2)
    finally:
        stop_process(second)
    assert len(messages) == 1, (tmp_path / "worker-2.log").read_text()
    assert "192.0.2.1" in body_text(messages[0])
    await db_session.refresh(note)
    assert note.sent_at is not None and note.attempts == 2


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
async def test_celery_adapter_runs_the_same_tasks(
    broker: str, settings: Settings, tmp_path: Path, smtp: tuple[RecordingHandler, int], db_session: AsyncSession
) -> None:
    handler, port = smtp
    user = await create_user(settings, username=f"cel{broker}")
    note = await _outbox_row(db_session, user.id)
    broker_url = (
        settings.redis.url.rsplit("/", 1)[0] + "/12" if broker == "redis" else "amqp://guest:guest@127.0.0.1:5672//"
    )
    env = _worker_env(settings, port, CELERY_BROKER_URL=broker_url, JOB_QUEUE_BACKEND="celery")
    worker = _spawn(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "tasks.celery_app",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "-Q",
            f"celery-{broker}-{note.id.hex[:6]}",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        tmp_path / "celery.log",
    )
    try:
        from celery import Celery

        app = Celery("test", broker=broker_url)
        app.send_task(
            JobName.SEND_LOGIN_NOTIFICATION_EMAIL.value,
            kwargs={"notification_id": str(note.id), **note.payload},
            queue=f"celery-{broker}-{note.id.hex[:6]}",
        )
        messages = handler.wait_for(1, timeout=60)
    finally:
        stop_process(worker, timeout=20, sig=signal.SIGTERM)
    assert len(messages) == 1, (tmp_path / "celery.log").read_text()[-3000:]
    assert messages[0]["To"] == f"cel{broker}@example.com"
    rows = (await db_session.execute(select(Notification.sent_at).where(Notification.id == note.id))).scalar_one()
    assert rows is not None


async def test_celery_queue_reports_a_dead_broker_instead_of_raising() -> None:
    queue = CeleryQueue(f"redis://127.0.0.1:{free_port()}/0")
    assert await queue.enqueue(JobName.CLEANUP_EXPIRED_TOKENS, "job-1") is False
