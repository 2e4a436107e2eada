"""`just soak`: a long run of steady mixed traffic, watching for leaks (not part of CI).

Drives login, verify, refresh and logout at a fixed rate (open loop: the rate does not drop
when the server slows down) and samples, every `--interval` seconds, the API process's RSS
and open file descriptors, its PostgreSQL connections (pg_stat_activity) and the Redis
clients (INFO clients). Prints one line per sample and, at the end, a verdict on the trend
of each figure over the run after warm-up; writes everything to bench/results/soak-*.json.

    python -m bench.soak --spawn --minutes 10           # starts its own API on DATABASE_URL/REDIS_URL
    python -m bench.soak --url http://127.0.0.1:8000 --pid 1234 --username u --password p
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API = "/api/v1/auth"
# Share of each operation in the traffic (the rest of a logout's session is replaced by a login).
MIX = {"verify": 0.70, "refresh": 0.12, "login": 0.09, "logout": 0.09}


@dataclass
class Sample:
    t: float  # seconds since start
    rss_mib: float
    fds: int
    pg_connections: int
    redis_clients: int
    requests: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float


@dataclass
class Traffic:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    total: int = 0

    def take(self) -> tuple[int, dict[str, int], float, float]:
        lat, self.latencies = sorted(self.latencies), []
        errors = {k: v for k, v in self.statuses.items() if not k.startswith("2")}
        count = sum(self.statuses.values())
        self.statuses = Counter()
        if not lat:
            return count, errors, 0.0, 0.0
        return count, errors, lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


class Soak:
    def __init__(self, http: httpx.AsyncClient, username: str, password: str, sessions: int = 20) -> None:
        self.http = http
        self.credentials = {"username": username, "password": password}
        self.pairs: list[dict[str, Any]] = []
        self.target_sessions = sessions
        self.traffic = Traffic()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.traffic.statuses[type(exc).__name__] += 1
            return None
        self.traffic.latencies.append(time.perf_counter() - started)
        self.traffic.statuses[str(response.status_code)] += 1
        self.traffic.total += 1
        return response

    async def login(self) -> None:
        response = await self._call("POST", f"{API}/login", json=self.credentials)
        if response is not None and response.status_code == 200:
            self.pairs.append(response.json())

    async def one(self) -> None:
        if len(self.pairs) < self.target_sessions // 2:
            await self.login()
            return
        kind = random.choices(list(MIX), weights=list(MIX.values()))[0]  # noqa: S311 - a traffic mix
        if kind == "login":
            await self.login()
            if len(self.pairs) > self.target_sessions:
                self.pairs.pop(0)
            return
        # Checked out while in use: no session is refreshed and logged out at once, so any 401 is real.
        pair = self.pairs.pop(random.randrange(len(self.pairs)))  # noqa: S311
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        if kind == "verify":
            await self._call("GET", f"{API}/verify", headers=auth)
        elif kind == "refresh":
            response = await self._call("POST", f"{API}/refresh", json={"refresh_token": pair["refresh_token"]})
            if response is not None and response.status_code == 200:
                pair = response.json()
        else:
            await self._call("POST", f"{API}/logout", headers=auth)
            return
        self.pairs.append(pair)

    async def drive(self, rate: float, until: float, max_in_flight: int = 64) -> None:
        """Open loop: start one operation every 1/rate s; skip (and count) when too many are in flight."""
        gate = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def guarded() -> None:
            try:
                await self.one()
            finally:
                gate.release()

        next_at = time.monotonic()
        while time.monotonic() < until:
            next_at += 1 / rate
            if gate.locked():
                self.traffic.statuses["skipped"] += 1
            else:
                await gate.acquire()
                task = asyncio.create_task(guarded())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)


async def _pg_connections(database_url: str) -> int:
    if not database_url:
        return -1
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


async def _redis_clients(redis_url: str) -> int:
    if not redis_url:
        return -1
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        info = await client.info("clients")
        return int(info["connected_clients"]) - 1  # not counting this probe
    finally:
        await client.aclose()


def _process_figures(pid: int) -> tuple[float, int]:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    fds = sum(p.num_fds() for p in procs)
    return rss, fds


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 3600


def verdict(samples: list[Sample]) -> dict[str, Any]:
    """Trend of each figure after warm-up (the first third): growing, or flat within noise."""
    steady = samples[len(samples) // 3 :] if len(samples) >= 6 else samples
    out: dict[str, Any] = {}
    limits = {"rss_mib": 20.0, "fds": 10, "pg_connections": 3, "redis_clients": 3}  # allowed growth per hour
    for name, allowed in limits.items():
        values = [getattr(s, name) for s in steady]
        if not values or min(values) < 0:
            out[name] = {"verdict": "not measured"}
            continue
        slope = _slope_per_hour([(s.t, getattr(s, name)) for s in steady])
        growth = values[-1] - values[0]
        growing = slope > allowed and growth > 0
        out[name] = {
            "first": values[0],
            "last": values[-1],
            "min": min(values),
            "max": max(values),
            "slope_per_hour": round(slope, 2),
            "verdict": "GROWING" if growing else "stable",
        }
    total = sum(s.requests for s in samples)
    errors: Counter[str] = Counter()
    for s in samples:
        errors.update(s.errors)
    out["requests"] = total
    out["errors"] = dict(errors)
    out["ok"] = all(v.get("verdict") != "GROWING" for v in out.values() if isinstance(v, dict))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _spawned_api(username: str, password: str) -> Any:
    """Our own API on a free port (generous rate limits: the soak is about leaks, not limits)."""
    env = {
        **os.environ,
        "RATE_LIMIT_LOGIN": "1000000/minute",
        "RATE_LIMIT_LOGIN_FAILURES": "1000000/minute",
        "RATE_LIMIT_REFRESH": "1000000/hour",
        "RATE_LIMIT_API": "1000000/minute",
        "RATE_LIMIT_PUBLIC": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "auth_service",
            "create-user",
            username,
            "--email",
            f"{username}@example.com",
            "--password-stdin",
        ],
        input=password.encode(),
        env=env,
        cwd=ROOT,
        check=False,
        capture_output=True,
    )
    port = _free_port()
    log = (RESULTS / "soak-api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "auth_service", "api", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit(f"the API exited ({proc.returncode}); see {log.name}")
            time.sleep(0.3)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _find_pid(url: str) -> int:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise SystemExit(f"no process listens on port {port}; pass --pid")


async def run(args: argparse.Namespace, base: str, pid: int) -> dict[str, Any]:
    started = time.monotonic()
    until = started + args.minutes * 60
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=httpx.Limits(max_connections=64)) as http:
        soak = Soak(http, args.username, args.password)
        driver = asyncio.create_task(soak.drive(args.rate, until))
        print(f"soak: {args.minutes} min at {args.rate}/s against {base} (pid {pid}), a sample every {args.interval} s")
        print(
            f"{'t':>6} {'rss MiB':>8} {'fds':>5} {'pg':>4} {'redis':>5} {'req':>6} {'p50 ms':>7} {'p99 ms':>7}  errors"
        )
        while True:
            await asyncio.sleep(min(args.interval, max(0.0, until - time.monotonic())))
            rss, fds = _process_figures(pid)
            count, errors, p50, p99 = soak.traffic.take()
            sample = Sample(
                t=round(time.monotonic() - started, 1),
                rss_mib=round(rss, 1),
                fds=fds,
                pg_connections=await _pg_connections(args.database_url),
                redis_clients=await _redis_clients(args.redis_url),
                requests=count,
                errors=errors,
                p50_ms=round(p50, 1),
                p99_ms=round(p99, 1),
            )
            samples.append(sample)
            print(
                f"{sample.t:>6.0f} {sample.rss_mib:>8.1f} {sample.fds:>5} {sample.pg_connections:>4} "
                f"{sample.redis_clients:>5} {sample.requests:>6} {sample.p50_ms:>7.1f} {sample.p99_ms:>7.1f}  "
                f"{sample.errors or ''}",
                flush=True,
            )
            if time.monotonic() >= until:
                break
        await driver
    result = verdict(samples)
    return {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "minutes": args.minutes,
        "rate_per_second": args.rate,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "samples": [asdict(s) for s in samples],
        "verdict": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="operations per second (open loop)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--url", default="", help="a running API (else --spawn)")
    parser.add_argument("--spawn", action="store_true", help="start our own API on DATABASE_URL/REDIS_URL")
    parser.add_argument("--pid", type=int, default=0, help="the API process (default: whoever listens on --url)")
    parser.add_argument("--username", default=os.environ.get("SOAK_USERNAME", "soak-user"))
    parser.add_argument("--password", default=os.environ.get("SOAK_PASSWORD", ""))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.spawn:
        args.password = args.password or secrets.token_urlsafe(18)
        if args.username == "soak-user":  # a fresh user per run, so the generated password is its own
            args.username = f"soak-{secrets.token_hex(4)}"
        with _spawned_api(args.username, args.password) as (base, pid):
            report = asyncio.run(run(args, base, pid))
    else:
        if not (args.url and args.password):
            raise SystemExit("give --url and --password (or SOAK_PASSWORD), or use --spawn")
        report = asyncio.run(run(args, args.url, args.pid or _find_pid(args.url)))
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print()
    for name, figure in report["verdict"].items():
        print(f"{name:>15}: {figure}")
    print(f"verdict: {'no growth' if report['verdict']['ok'] else 'GROWTH — look at the samples'}; written to {out}")
    if not report["verdict"]["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
