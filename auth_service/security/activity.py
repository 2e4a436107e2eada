"""Active users without table scans: one HyperLogLog per minute in Redis.

Login and verify add the user to the current minute's HLL (inside their existing
pipeline, so no extra round trip); a PFCOUNT over the last 15 keys gives the distinct
users of the last 15 minutes. All keys share one hash tag so PFCOUNT works on Cluster.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

__all__ = ["ActivityTracker"]

WINDOW_MINUTES = 15


class ActivityTracker:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def _key(self, minute: int) -> str:
        return f"{self._prefix}:active:{{hll}}:{minute}"

    def queue(self, pipe: Pipeline, user_id: str) -> None:
        key = self._key(int(time.time() // 60))
        pipe.pfadd(key, user_id)
        pipe.expire(key, (WINDOW_MINUTES + 1) * 60)

    async def count(self, redis: Redis) -> int:
        now = int(time.time() // 60)
        return int(await redis.pfcount(*(self._key(now - i) for i in range(WINDOW_MINUTES))))
