"""The arq worker killed (SIGKILL) in the middle of a batch of real login notifications.

tests/e2e/test_workers.py::test_worker_killed_mid_job_runs_it_again_without_duplicating_the_mail
proves one job killed mid-SMTP runs again exactly once. This adds the batch seen from the
API: logins keep coming while no worker runs, and after a restart every login's
notification is delivered exactly once (one message per successful login record, distinct
Message-IDs, every outbox row marked sent).

The SMTP server holds every delivery of the first worker until it is killed, so the kill
lands mid-send for each job in flight. (A kill in the milliseconds between the server's
250 and the outbox mark would send that message again, with the same Message-ID: the
README states this at-least-once window.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.settings import Settings
from db.models import LoginRecord, Notification
from tests.conftest import PYTHON
from tests.e2e.conftest import api_server, stop_process
from tests.e2e.test_workers import _spawn, _worker_env
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.smtp import smtp_server

LOGIN = "/api/v1/auth/login"


async def test_worker_killed_mid_batch_delivers_every_login_notification_once(
    settings: Settings, tmp_path: Path, db_session: AsyncSession
) -> None:
    await create_user(settings, username="kim")
    creds = {"username": "kim", "password": DEFAULT_PASSWORD}
    with smtp_server() as (handler, port), api_server(settings, tmp_path, RATE_LIMIT_LOGIN="1000/minute") as base:
        handler.hold = True  # every delivery of the first worker waits: the kill lands mid-send
        env = _worker_env(settings, port, WORKER_JOB_TIMEOUT="3")
        with httpx.Client(base_url=base, timeout=10) as http:
            assert all(http.post(LOGIN, json=creds).status_code == 200 for _ in range(4))
            first = _spawn([PYTHON, "-m", "tasks"], env, tmp_path / "worker-1.log")
            deadline = time.monotonic() + 30
            while handler.attempts < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            handler.hold = False  # the held sessions are refused (451) to a dead client
            delivered_before_restart = len(handler.messages)
            # The queue keeps taking work while no worker runs.
            assert all(http.post(LOGIN, json=creds).status_code == 200 for _ in range(3))

        second = _spawn([PYTHON, "-m", "tasks"], env, tmp_path / "worker-2.log")
        try:
            messages = handler.wait_for(7, timeout=60)
            time.sleep(2)  # a duplicate would arrive now
        finally:
            stop_process(second)

    logins = (await db_session.execute(select(LoginRecord).where(LoginRecord.success))).scalars().all()
    rows = (await db_session.execute(select(Notification))).scalars().all()
    assert delivered_before_restart < 7
    assert len(logins) == len(rows) == 7
    assert len(messages) == 7, (tmp_path / "worker-2.log").read_text()[-3000:]
    assert len({m["Message-ID"] for m in messages}) == 7
    assert all(row.sent_at is not None for row in rows)
