"""A trivial app with one unlimited and one rate-limited route, for measuring one limit check.

Same server, same process, same JSON: the only difference is the GCRA check against Redis.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from redis.asyncio import Redis

from auth_service.lib.redis.ratelimit import Check, RateLimiter
from auth_service.settings import RateLimit

_state: dict[str, RateLimiter] = {}
# A limit never reached, so every request runs the whole script and is allowed.
_RULE = RateLimit(1_000_000_000, 60)


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7"))
    _state["limiter"] = RateLimiter(redis, prefix="bench")
    yield
    await redis.aclose()


@get("/unlimited")
async def unlimited() -> dict[str, bool]:
    return {"ok": True}


@get("/limited")
async def limited() -> dict[str, bool]:
    limiter = _state["limiter"]
    (decision,) = await limiter.check([Check(limiter.key("bench", "127.0.0.1"), _RULE)])
    return {"ok": decision.allowed}


app = Litestar([unlimited, limited], lifespan=[lifespan], logging_config=None)
