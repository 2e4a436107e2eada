"""Active users without table scans: one HyperLogLog per minute in Redis.

Login and verify add the user to the current minute's HLL (with their other Redis
commands, so no extra round trip); a PFCOUNT over the last 15 keys gives the distinct
users of the last 15 minutes. All keys share one hash tag so PFCOUNT works on Cluster.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from auth_service.lib.redis.lean import Command

__all__ = ["ActivityTracker"]

WINDOW_MINUTES = 15


class ActivityTracker:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    # Seconds a minute's HLL is kept: the window, plus the minute being written.
    ttl = (WINDOW_MINUTES + 1) * 60

    def _key(self, minute: int) -> str:
        return f"{self._prefix}:active:{{hll}}:{minute}"

    def current_key(self) -> str:
        """This minute's HLL (verify adds to it from its Lua script)."""
        return self._key(int(time.time() // 60))

    def commands(self, user_id: str) -> list[Command]:
        """Mark the user active this minute (sent with the caller's other commands)."""
        key = self.current_key()
        return [("PFADD", key, user_id), ("EXPIRE", key, self.ttl)]

    async def count(self, redis: Redis) -> int:
        now = int(time.time() // 60)
        return int(await redis.pfcount(*(self._key(now - i) for i in range(WINDOW_MINUTES))))
