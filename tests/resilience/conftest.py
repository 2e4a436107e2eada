"""The failure suite's own servers: a PostgreSQL cluster and a redis-server per test on spare
ports (never the shared ones), a TCP proxy that slows or stalls a dependency, and a small
load driver that records what every client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.settings import Settings
from tests.conftest import TABLES, free_port, make_settings, prepare_database
from tests.e2e.conftest import nginx_in_front, own_redis  # noqa: F401 - fixtures shared with e2e
from tests.proxy import TcpProxy

__all__ = ["Load", "OwnPostgres", "TcpProxy", "count_rows", "envelope_ok", "truncate", "wait_until"]


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"PostgreSQL server binaries ({name}) are not installed")
    return path


class OwnPostgres:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a spare port, run as `postgres` when we are root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="auth-resilience-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/auth"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -h 127.0.0.1 -F -c max_connections=60"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session cleanly; `immediate` is a crash (no shutdown checkpoint)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        async def create() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            try:
                await conn.execute("CREATE DATABASE auth")
            finally:
                await conn.close()

        asyncio.run(create())

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of our own, migrated to head; the test may stop and start it."""
    server = OwnPostgres()
    try:
        server.start()
        server.create_database()
        prepare_database(server.url)
        yield server
    finally:
        server.cleanup()


async def count_rows(database_url: str, sql: str, *args: Any) -> int:
    """One integer from PostgreSQL (a fresh connection, so it never shares the API's fate)."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def truncate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def pg_settings(own_postgres: OwnPostgres, redis_url: str) -> Settings:
    return make_settings(own_postgres.url, redis_url)


# --------------------------------------------------------------------------- a TCP proxy


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[int], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(target_port: int) -> TcpProxy:
        proxies.append(TcpProxy(target_port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


# --------------------------------------------------------------------------- load


@dataclass
class Outcome:
    kind: str
    status: int  # 0: the client got no HTTP answer at all
    code: str | None
    started: float
    elapsed: float


@dataclass
class Load:
    """Steady concurrent traffic; every answer is kept with the phase it happened in."""

    outcomes: list[Outcome] = field(default_factory=list)

    def since(self, t: float, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if t <= o.started < until]

    @staticmethod
    def statuses(outcomes: list[Outcome], kind: str | None = None) -> Counter[int]:
        return Counter(o.status for o in outcomes if kind is None or o.kind == kind)

    async def call(self, kind: str, request: Awaitable[httpx.Response]) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await request
        except httpx.HTTPError:
            self.outcomes.append(Outcome(kind, 0, None, started, time.monotonic() - started))
            return None
        code = None
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
            code = response.json().get("error", {}).get("code")
        self.outcomes.append(Outcome(kind, response.status_code, code, started, time.monotonic() - started))
        return response

    async def run(self, step: Callable[[int], Awaitable[None]], workers: int, stop: asyncio.Event) -> None:
        """Run `step(worker)` in a loop on `workers` tasks until `stop` is set."""

        async def loop(worker: int) -> None:
            while not stop.is_set():
                await step(worker)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(loop(i) for i in range(workers)))


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.2) -> float:
    """Poll until `check()`; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def envelope_ok(response: httpx.Response, code: str) -> bool:
    body = response.json()
    error = body.get("error", {})
    return error.get("code") == code and {"message", "timestamp", "request_id"} <= error.keys()
