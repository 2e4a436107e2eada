"""The one way the API hands work to the worker: jobs by name, never by import.

`JobQueue.enqueue` never raises: a queue that is down is logged and reported as False,
and the outbox (notifications table) makes sure the work is enqueued later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import structlog
from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from opentelemetry.propagate import inject

from auth_service.lib.redis.lean import LeanRedis, Script

__all__ = ["ArqQueue", "CeleryQueue", "JobName", "JobQueue", "QueuedJob", "enqueue_all", "make_queue"]

log = structlog.get_logger()


class JobName(StrEnum):
    """Every job the worker knows; a unit test checks each is registered with it (arq and Celery)."""

    SEND_LOGIN_NOTIFICATION_EMAIL = "send_login_notification_email"
    SEND_SUSPICIOUS_LOGIN_ALERT = "send_suspicious_login_alert"
    CLEANUP_EXPIRED_TOKENS = "cleanup_expired_tokens"
    GENERATE_DAILY_LOGIN_REPORT = "generate_daily_login_report"
    DISPATCH_OUTBOX = "dispatch_outbox"
    SEND_ACCOUNT_EMAIL = "send_account_email"


@runtime_checkable
class JobQueue(Protocol):
    async def enqueue(self, name: JobName, job_id: str, **kwargs: Any) -> bool:
        """Queue `name(**kwargs)` once under `job_id`; True when the queue took it."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job decided by a service, to be enqueued after its transaction committed."""

    name: JobName
    job_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)


async def enqueue_all(queue: JobQueue, jobs: list[QueuedJob]) -> None:
    for job in jobs:
        await queue.enqueue(job.name, job.job_id, **job.kwargs)


def _with_trace(kwargs: dict[str, Any]) -> dict[str, Any]:
    carrier: dict[str, str] = {}
    inject(carrier)
    return {**kwargs, "traceparent": carrier["traceparent"]} if "traceparent" in carrier else kwargs


# arq's enqueue_job in one round trip instead of three (WATCH + EXISTS, then MULTI/PSETEX/ZADD/EXEC):
# the same keys, the same serialized job, and the same rule that a job id already queued or
# finished is not queued again. KEYS: job, result, queue; ARGV: expiry ms, job, score, job id.
ENQUEUE_SCRIPT = Script(
    """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""
)


class ArqQueue:
    """arq on the shared Redis. The job id makes a second enqueue of the same job a no-op.

    Jobs are written the way arq's `enqueue_job` writes them, by one Lua script over the lean
    connection (lib/redis/lean.py); arq's own client is used only for URLs that one cannot
    speak (rediss://). Login enqueues a notification every time, and arq's client spent
    about a tenth of a login's event-loop time.
    """

    def __init__(self, redis_url: str, *, timeout: float = 2.0) -> None:
        self._redis_url = redis_url
        self._timeout = timeout
        self._lean = LeanRedis(redis_url, timeout=timeout) if LeanRedis.supports(redis_url) else None
        self._pool: Any = None

    async def enqueue(self, name: JobName, job_id: str, **kwargs: Any) -> bool:
        try:
            # Bound the whole enqueue, so a frozen Redis cannot pile up post-response tasks
            # (the outbox dispatcher sends what was not enqueued).
            async with asyncio.timeout(self._timeout):
                if self._lean is not None:
                    now_ms = int(time.time() * 1000)
                    job = serialize_job(name.value, (), _with_trace(kwargs), None, now_ms)
                    keys = (job_key_prefix + job_id, result_key_prefix + job_id, default_queue_name)
                    await self._lean.evalsha(ENQUEUE_SCRIPT, keys, (expires_extra_ms, job, now_ms, job_id))
                else:
                    pool = await self._arq_pool()
                    await pool.enqueue_job(name.value, _job_id=job_id, **_with_trace(kwargs))
            return True
        except Exception as exc:  # the queue being down must never fail the caller
            log.warning("jobs.enqueue_failed", job=name.value, error=type(exc).__name__)
            return False

    async def _arq_pool(self) -> Any:
        if self._pool is None:
            settings = RedisSettings.from_dsn(self._redis_url)  # arq sets no read timeout: see enqueue
            settings.conn_timeout, settings.conn_retries = int(max(1, self._timeout)), 0
            self._pool = await create_pool(settings)
        return self._pool

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        if self._pool is not None:
            await self._pool.aclose()


class CeleryQueue:
    """The optional Celery adapter (`pip install .[celery]`): the same task names on CELERY_BROKER_URL."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self._app: Any = None

    async def enqueue(self, name: JobName, job_id: str, **kwargs: Any) -> bool:
        import asyncio

        try:
            if self._app is None:
                from celery import Celery

                self._app = Celery("auth_service", broker=self._broker_url)
                # Fail fast when the broker is down: the outbox retries later, the login must not wait.
                self._app.conf.update(
                    broker_connection_retry_on_startup=False,
                    broker_connection_timeout=2,
                    task_publish_retry=False,
                )
            send = self._app.send_task
            await asyncio.to_thread(send, name.value, kwargs=_with_trace(kwargs), task_id=job_id)
            return True
        except Exception as exc:
            log.warning("jobs.enqueue_failed", job=name.value, error=type(exc).__name__, backend="celery")
            return False

    async def close(self) -> None:
        return None


def make_queue(backend: str, *, redis_url: str, celery_broker_url: str) -> JobQueue:
    if backend == "celery":
        return CeleryQueue(celery_broker_url or redis_url)
    return ArqQueue(redis_url)
