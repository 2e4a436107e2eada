"""The job queue's Redis frozen: an enqueue gives up within its timeout (the outbox row stays
for the dispatcher) instead of hanging, so post-response tasks cannot pile up."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from auth_service.lib.queue import ArqQueue, JobName


async def test_enqueue_to_a_frozen_redis_gives_up_within_its_timeout(own_redis: Any) -> None:
    queue = ArqQueue(own_redis.url, timeout=0.5)
    try:
        assert await queue.enqueue(JobName.CLEANUP_EXPIRED_TOKENS, "warm-up")
        own_redis.signal(signal.SIGSTOP)
        started = time.monotonic()
        results = await asyncio.gather(
            *(queue.enqueue(JobName.CLEANUP_EXPIRED_TOKENS, f"frozen-{i}") for i in range(20))
        )
        waited = time.monotonic() - started
        assert results == [False] * 20
        assert waited < 2.0, f"enqueues waited {waited:.2f}s with a 0.5s timeout"
        own_redis.signal(signal.SIGCONT)
        assert await queue.enqueue(JobName.CLEANUP_EXPIRED_TOKENS, "after")
    finally:
        own_redis.signal(signal.SIGCONT)
        await queue.close()
