"""Refreshes the gauges that need I/O (active users, Redis memory, queue length).

Observable-gauge callbacks run inside the metric reader and must not block, so a
background task reads Redis every few seconds and the callbacks return the last values.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from auth_service.lib.redis.activity import ActivityTracker
from observability.metrics import gauges

__all__ = ["ARQ_QUEUE", "poll_gauges", "read_eviction_policy", "redis_check"]

log = structlog.get_logger()

ARQ_QUEUE = "arq:queue"  # arq's default queue (a sorted set of job ids)


async def read_eviction_policy(redis: Redis) -> None:
    """Redis's maxmemory-policy into the gauges; an error line whenever it becomes one that
    may evict our keys (every key we write has a TTL, so volatile-* policies count too)."""
    try:
        reply = await redis.config_get("maxmemory-policy")
        policy = str(reply.get("maxmemory-policy")) if reply.get("maxmemory-policy") else None
    except ResponseError:  # CONFIG renamed or refused (managed Redis): unknown, said once
        if gauges.redis_eviction_policy is not None or not _said["config"]:
            log.warning("redis.eviction_policy_unknown")
            _said["config"] = True
        gauges.redis_eviction_policy = None
        return
    if policy != gauges.redis_eviction_policy and policy is not None and policy != "noeviction":
        log.error(
            "redis.eviction_policy_unsafe",
            policy=policy,
            hint="set maxmemory-policy noeviction: evicted rate-limit keys give attackers fresh budgets",
        )
    gauges.redis_eviction_policy = policy


_said = {"config": False}


async def refresh_once(redis: Redis, activity: ActivityTracker) -> None:
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.info("memory")
            pipe.zcard(ARQ_QUEUE)
            memory, queued = await pipe.execute()
        gauges.redis_memory = int(memory["used_memory"])
        gauges.queue_length = int(queued)
        gauges.active_users = await activity.count(redis)
        await read_eviction_policy(redis)
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


def redis_check(reachable: bool) -> str:
    """Health's word for Redis: "ok", "unavailable", or "degraded: …" when it may evict our keys."""
    if not reachable:
        return "unavailable"
    policy = gauges.redis_eviction_policy
    if policy is not None and policy != "noeviction":
        return f"degraded: eviction policy {policy} (set maxmemory-policy noeviction)"
    return "ok"
