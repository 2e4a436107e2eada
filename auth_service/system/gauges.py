"""Refreshes the gauges that need I/O (active users, Redis memory, queue length).

Observable-gauge callbacks run inside the metric reader and must not block, so a
background task reads Redis every few seconds and the callbacks return the last values.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from auth_service.security.activity import ActivityTracker
from observability.metrics import gauges

__all__ = ["ARQ_QUEUE", "poll_gauges"]

log = structlog.get_logger()

ARQ_QUEUE = "arq:queue"  # arq's default queue (a sorted set of job ids)


async def refresh_once(redis: Redis, activity: ActivityTracker) -> None:
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.info("memory")
            pipe.zcard(ARQ_QUEUE)
            memory, queued = await pipe.execute()
        gauges.redis_memory = int(memory["used_memory"])
        gauges.queue_length = int(queued)
        gauges.active_users = await activity.count(redis)
    except RedisError:
        # Unknown is not zero: the series disappear while Redis is down.
        gauges.redis_memory = gauges.queue_length = gauges.active_users = None


async def poll_gauges(redis: Redis, activity: ActivityTracker, stop: asyncio.Event, interval: float = 5.0) -> None:
    """Refresh every `interval` seconds until `stop` is set.

    Stopped by an event, not by cancellation: cancelling redis-py in the middle of a
    command can leave the connection pool waiting forever at shutdown.
    """
    while not stop.is_set():
        await refresh_once(redis, activity)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
