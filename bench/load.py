"""A small asyncio/httpx load generator, for what wrk cannot express: rotating refresh tokens,
paced logins beside a verify load, floods, and whole user journeys."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

Step = Callable[[httpx.AsyncClient], Awaitable[int]]  # one request; returns its status


@dataclass
class Load:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


def client(base: str, connections: int = 64) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=30)


async def _timed(step: Step, http: httpx.AsyncClient, load: Load) -> None:
    started = time.perf_counter()
    try:
        status = await step(http)
    except httpx.HTTPError:
        status = 0
    load.latencies_ms.append((time.perf_counter() - started) * 1000)
    load.statuses[status] += 1


async def closed_loop(base: str, steps: list[Step], seconds: float) -> Load:
    """One worker per step function, each sending its next request when the last one returns."""
    load = Load()
    deadline = time.perf_counter() + seconds

    async def worker(step: Step, http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            await _timed(step, http, load)

    async with client(base, len(steps)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(step, http) for step in steps))
        load.seconds = time.perf_counter() - started
    return load


async def paced(base: str, step: Step, rate: float, seconds: float) -> Load:
    """Open loop: start a request every 1/rate seconds whatever the earlier ones are doing."""
    load = Load()
    async with client(base, 256) as http:
        started = time.perf_counter()
        tasks = []
        n = 0
        while (now := time.perf_counter()) < started + seconds:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(_timed(step, http, load)))
            n += 1
        await asyncio.gather(*tasks)
        load.seconds = time.perf_counter() - started
    return load


async def burst(base: str, step: Step, concurrency: int) -> Load:
    """`concurrency` requests at once."""
    load = Load()
    async with client(base, concurrency) as http:
        started = time.perf_counter()
        await asyncio.gather(*(_timed(step, http, load) for _ in range(concurrency)))
        load.seconds = time.perf_counter() - started
    return load
