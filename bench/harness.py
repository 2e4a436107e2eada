"""What every scenario needs: the real service on its own database, wrk, CPU and RSS readings,
rounds interleaved with a baseline, and medians."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
# Two benches on one PostgreSQL (two work trees) would drop each other's database: name yours.
DATABASE = os.environ.get("BENCH_DATABASE", "auth_bench")
PASSWORD = "bench password 123"
SERVER_CORE, LOAD_CORE = 0, 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PINNING = bool(shutil.which("taskset")) and len(os.sched_getaffinity(0)) >= 2  # read before run.py pins itself


def pinning() -> bool:
    return _PINNING


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if pinning() else []


@dataclass(frozen=True)
class Run:
    """One load run: throughput and latency percentiles (ms)."""

    rps: float
    p50: float
    p99: float
    requests: int = 0
    errors: int = 0
    cpu_us: float = 0.0  # server CPU per request


def wrk(
    url: str,
    seconds: float,
    connections: int,
    script: str | None = None,
    *,
    allow_errors: bool = False,
    output: list[str] | None = None,
) -> Run:
    """Run wrk on the load core; `script` is Lua source (headers, method, body); wrk's own
    output is appended to `output` (what a script's `done` prints)."""
    extra: list[str] = []
    if script:
        path = RESULTS / f"wrk-{os.getpid()}-{abs(hash(script))}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        extra = ["-s", str(path)]
    try:
        out = subprocess.run(
            [*pin(LOAD_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", *extra, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if script:
            path.unlink(missing_ok=True)
    if output is not None:
        output.append(out)

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    def pct(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = int(number(r"Non-2xx or 3xx responses:\s+(\d+)")) + int(number(r"Socket errors:.*?timeout (\d+)"))
    if errors and not allow_errors:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return Run(number(r"Requests/sec:\s+([\d.]+)"), pct("50"), pct("99"), int(number(r"(\d+) requests in")), errors)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU so far of a process (all its threads), or of one of its threads."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measured(pid: int, run: callable) -> Run:  # type: ignore[valid-type]
    """Run `run()` and attach the server's CPU per request."""
    before = cpu_seconds(pid)
    result: Run = run()
    spent = cpu_seconds(pid) - before
    cpu_us = spent * 1e6 / result.requests if result.requests else 0.0
    return Run(result.rps, result.p50, result.p99, result.requests, result.errors, cpu_us)


def median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50 for r in runs),
        statistics.median(r.p99 for r in runs),
        sum(r.requests for r in runs),
        sum(r.errors for r in runs),
        statistics.median(r.cpu_us for r in runs),
    )


def interleave(arms: dict[str, callable], rounds: int) -> dict[str, Run]:  # type: ignore[valid-type]
    """Alternate the arms for `rounds`, a progress line per run; medians per arm."""
    samples: dict[str, list[Run]] = {name: [] for name in arms}
    for i in range(rounds):
        for name, arm in arms.items():
            run = arm()
            samples[name].append(run)
            print(
                f"  round {i + 1}/{rounds} {name:16s} {run.rps:9.1f} req/s  p50 {run.p50:7.2f} ms  "
                f"p99 {run.p99:7.2f} ms" + (f"  {run.cpu_us:6.0f} µs CPU/req" if run.cpu_us else ""),
                flush=True,
            )
    return {name: median_run(runs) for name, runs in samples.items()}


def start(cmd: list[str], env: dict[str, str], url: str, *, core: int | None = SERVER_CORE) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [*(pin(core) if core is not None else []), *cmd], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}: {cmd}")
        try:
            httpx.get(url, timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def bare(module: str = "bench.bare_app") -> Iterator[tuple[str, int]]:
    """The baseline server: a bare Litestar JSON endpoint, same uvicorn settings; (url, pid)."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port)]
    server = start(
        [*cmd, "--log-level", "warning", "--no-access-log"], dict(os.environ), f"http://127.0.0.1:{port}/json"
    )
    try:
        yield f"http://127.0.0.1:{port}/json", server.pid
    finally:
        stop(server)


@dataclass
class Service:
    """The real service under uvicorn, on database `auth_bench` (BENCH_DATABASE; recreated) with user `bench`."""

    base: str
    pid: int
    env: dict[str, str]
    database_url: str
    users: list[str] = field(default_factory=list)


def _admin(sql: str, url: str = PG_ADMIN_URL) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


_TEMPLATE = f"{DATABASE}_template"
_template_migrated = False


def _fresh_database(database: str, env: dict[str, str]) -> str:
    """Drop and recreate `database` as a copy of a template migrated once per bench run
    (a migration is a 4-second Python start; a copy from the template takes milliseconds)."""
    global _template_migrated
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    if not _template_migrated:
        _admin(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{_TEMPLATE}"')
        cli = [sys.executable, "-m", "auth_service", "migrate"]
        subprocess.run(
            cli, cwd=ROOT, env={**env, "DATABASE_URL": f"{base}/{_TEMPLATE}"}, check=True, stdout=subprocess.DEVNULL
        )
        _template_migrated = True
    _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{database}" TEMPLATE "{_TEMPLATE}"')
    return f"{base}/{database}"


@contextmanager
def service(users: int = 1, **settings: str) -> Iterator[Service]:
    """A fresh `auth_bench` (BENCH_DATABASE) database, `users` users (bench, bench1, …), the API on the server core."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "RATE_LIMIT_VERIFY": "1000000000/minute",
        "RATE_LIMIT_API": "1000000000/minute",
        "RATE_LIMIT_LOGIN": "1000000000/minute",
        "RATE_LIMIT_REFRESH": "1000000000/minute",
        "RATE_LIMIT_PUBLIC": "1000000000/minute",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "EMAIL_BACKEND": "console",
        **settings,
    }
    database_url = _fresh_database(DATABASE, env)
    env["DATABASE_URL"] = database_url
    cli = [sys.executable, "-m", "auth_service"]
    names = ["bench", *(f"bench{i}" for i in range(1, users))]
    _create_users(database_url, names)
    port = free_port()
    server = start([*cli, "api", "--port", str(port)], env, f"http://127.0.0.1:{port}/api/v1/health")
    try:
        # One login first, as a real client's first sign-in: it makes this IP known for the user,
        # so wrk's 16 concurrent logins are not refused by the username's failure budget (which
        # reserves a slot for every attempt in flight from an IP it has not seen succeed).
        login(f"http://127.0.0.1:{port}")
        yield Service(f"http://127.0.0.1:{port}", server.pid, env, database_url, names)
    finally:
        stop(server)


def _create_users(database_url: str, names: list[str]) -> None:
    """Users straight into the table with one shared argon2id hash (creating them through the
    CLI would cost a hash and a process each)."""
    from argon2 import PasswordHasher, Type

    hashed = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID).hash(PASSWORD)
    rows = ", ".join(f"('{name}', '{name}@example.com', '{hashed}')" for name in names)
    _admin(
        "INSERT INTO users (id, username, username_key, email, email_key, password_hash, created_at, updated_at) "
        "SELECT gen_random_uuid(), v.u, lower(v.u), v.e, lower(v.e), v.h, now(), now() "
        f"FROM (VALUES {rows}) AS v(u, e, h)",
        database_url,
    )


def login(base: str, username: str = "bench") -> dict[str, str]:
    response = httpx.post(f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD}, timeout=30)
    response.raise_for_status()
    tokens: dict[str, str] = response.json()
    return tokens


def bearer_script(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def login_script(username: str = "bench", password: str = PASSWORD) -> str:
    body = '{"username": "%s", "password": "%s"}' % (username, password)  # noqa: UP031 - Lua source
    return f'wrk.method = "POST"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n'
