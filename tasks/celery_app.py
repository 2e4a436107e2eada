"""The optional Celery adapter (`pip install .[celery]`): the same job functions, under the
seed's task names, with a beat schedule. Broker: CELERY_BROKER_URL (Redis or RabbitMQ);
results: the broker when it is Redis, else the job Redis.

    celery -A tasks.celery_app worker --concurrency 4     (just celery-worker)
    celery -A tasks.celery_app beat                       (just celery-beat)

The API enqueues here instead of arq with JOB_QUEUE_BACKEND=celery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from celery import Celery, Task
from celery.schedules import crontab

from auth_service.lib.queue import JobName
from auth_service.settings import get_settings
from observability.logging import configure_logging
from tasks.worker import FUNCTIONS, job_context

__all__ = ["app"]

settings = get_settings()
configure_logging(level=settings.telemetry.log_level, fmt=settings.telemetry.log_format)

_broker = settings.redis.celery_broker_url or settings.redis.queue_url
app = Celery(
    "auth_service",
    broker=_broker,
    # Results next to the broker when it is Redis; with RabbitMQ, in the job Redis.
    backend=_broker if _broker.startswith(("redis://", "rediss://")) else settings.redis.queue_url,
)
app.conf.update(
    worker_concurrency=4,
    task_time_limit=settings.jobs.timeout,
    task_soft_time_limit=max(1, settings.jobs.timeout - 10),
    task_acks_late=True,  # a worker killed mid-job leaves the task to run again
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    beat_schedule={
        "cleanup-expired-tokens": {"task": JobName.CLEANUP_EXPIRED_TOKENS.value, "schedule": crontab(minute="7")},
        "daily-login-report": {
            "task": JobName.GENERATE_DAILY_LOGIN_REPORT.value,
            "schedule": crontab(hour="0", minute="5"),
        },
        "dispatch-outbox": {"task": JobName.DISPATCH_OUTBOX.value, "schedule": 60.0},
    },
)


async def _call(job: Callable[..., Awaitable[Any]], job_try: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    async with job_context(settings, job_try=job_try) as ctx:
        return await job(ctx, *args, **kwargs)


def _register(name: str, job: Callable[..., Awaitable[Any]]) -> None:
    def run(self: Task, *args: Any, **kwargs: Any) -> Any:  # type: ignore[type-arg]
        try:
            return asyncio.run(_call(job, self.request.retries + 1, args, kwargs))
        except Retry as exc:  # the jobs speak arq; Celery retries with the same backoff
            raise self.retry(countdown=(exc.defer_score or 5000) / 1000, max_retries=5) from exc

    app.task(name=name, bind=True)(run)


for _name, _job in FUNCTIONS.items():
    _register(_name.value, _job)
