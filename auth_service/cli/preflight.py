"""Before a process starts: the ports it will listen on are free and the servers it was given
answer. Each refusal is one line that names the setting and says what to do."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from urllib.parse import urlsplit

from auth_service.cli.output import fail
from auth_service.settings import Settings

__all__ = ["REACH_SECONDS", "check_servers", "ensure_port_free", "env_port"]

# A server that is starting beside us (compose, systemd) gets this long to answer.
REACH_SECONDS = 5.0


def env_port(name: str, default: int) -> int:
    """A port from the environment (VM_PORT, VMALERT_PORT): refused in one line when malformed."""
    raw = os.environ.get(name, "") or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        fail(f"{name}: must be a TCP port (1-65535), got {raw[:40]!r}")
    return int(raw)


def ensure_port_free(name: str, host: str, port: int) -> None:
    """Refuse to start when `host:port` is taken, naming the setting that chose it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn and prometheus_client bind: SO_REUSEADDR, so a port in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror:
            fail(f"{name}: cannot resolve the host {host!r}; set it to an address of this machine")
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"{name}: {host}:{port} is in use (set {name} or stop the other process)")
            if exc.errno == errno.EADDRNOTAVAIL:
                fail(f"{name}: {host} is not an address of this machine (set HOST, e.g. 127.0.0.1 or 0.0.0.0)")
            if exc.errno == errno.EACCES:
                fail(f"{name}: port {port} needs privileges; choose one above 1023")
            fail(f"{name}: cannot listen on {host}:{port} ({exc.strerror})")


def check_servers(settings: Settings, *, as_service: bool = False) -> None:
    """PostgreSQL and Redis answer (within REACH_SECONDS), or the process stops with one line.
    With `as_service` (the API and the worker), the service role must be able to log in too."""
    problem = asyncio.run(_database_problem(settings.database.migration_url))
    if problem:
        fail(f"DATABASE_URL: {problem}", code=1)
    if as_service:
        problem = asyncio.run(_database_problem(settings.database.url))
        if problem:
            fail(f"DATABASE_SERVICE_USER: {problem}; `just init` creates the role", code=1)
    problem = asyncio.run(_redis_problem(settings.redis.url, settings.redis.timeout))
    if problem:
        fail(f"REDIS_URL: {problem}", code=1)


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or ''}".rstrip(":")
    return "the local socket"


async def _database_problem(url: str) -> str | None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    where = _where(dsn)
    database = urlsplit(dsn).path.lstrip("/") or "(default)"
    deadline = time.monotonic() + REACH_SECONDS
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except asyncpg.InvalidCatalogNameError:
            return f"database {database!r} does not exist on {where}; create it (createdb {database}) or fix the URL"
        except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as exc:
            return f"PostgreSQL at {where} refused the login ({exc}); fix the user or password in the URL"
        except asyncpg.PostgresError as exc:
            return f"PostgreSQL at {where} refused the connection ({exc})"
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            if time.monotonic() >= deadline:
                code = getattr(exc, "errno", None)
                reason = os.strerror(code).lower() if code else str(exc) or "no answer"
                return (
                    f"cannot reach PostgreSQL at {where} ({reason}) after {REACH_SECONDS:g} s; "
                    "start it, or fix DATABASE_URL (unset: the embedded one)"
                )
            await asyncio.sleep(0.25)
        except ValueError as exc:  # a URL asyncpg cannot parse
            return f"not a usable PostgreSQL URL ({exc})"
        else:
            await conn.close()
            return None


async def _redis_problem(url: str, io_seconds: float) -> str | None:
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, RedisError, ResponseError

    where = _where(url)
    deadline = time.monotonic() + REACH_SECONDS
    while True:
        client = Redis.from_url(url, socket_timeout=io_seconds, socket_connect_timeout=min(io_seconds, 2.0))
        try:
            await client.ping()
        except AuthenticationError as exc:
            return f"Redis at {where} refused the credentials ({exc}); fix the password in the URL"
        except ResponseError as exc:
            return f"Redis at {where} refused the connection ({exc})"
        except (RedisError, OSError) as exc:
            if time.monotonic() >= deadline:
                return (
                    f"cannot reach Redis at {where} ({exc}) after {REACH_SECONDS:g} s; "
                    "start it, or fix REDIS_URL (unset: the embedded one)"
                )
            await asyncio.sleep(0.25)
        except ValueError as exc:
            return f"not a usable Redis URL ({exc})"
        else:
            return None
        finally:
            await client.aclose()
