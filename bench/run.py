"""`just bench`: measured figures, each as a ratio against a baseline from the same run.

Scenarios (load from wrk, 1 uvicorn worker, rounds interleaved with their baseline):
- `ratelimit`: a rate-limited trivial endpoint vs the same endpoint unlimited, same server;
- `verify`: GET /api/v1/auth/verify with a valid token on the real service (PostgreSQL,
  Redis) vs a bare Litestar app returning a small JSON object.
Writes bench/results/latest.json and latest.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def _wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> tuple[float, float, float]:
    """Run wrk; return (requests/s, p50 ms, p99 ms)."""
    extra = ["-s", str(script)] if script else []
    out = subprocess.run(
        [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rps, pct("50"), pct("99")


Target = tuple[str, str, "Path | None"]  # (name, url, wrk script)


def _interleave(
    baseline: Target, measured: Target, rounds: int, seconds: int, connections: int
) -> dict[str, list[tuple[float, float, float]]]:
    """Warm both up, then alternate baseline and measured for `rounds`, printing a line per run."""
    for _, url, script in (baseline, measured):
        _wrk(url, 2, connections, script)
    samples: dict[str, list[tuple[float, float, float]]] = {baseline[0]: [], measured[0]: []}
    for i in range(rounds):
        for name, url, script in (baseline, measured):
            rps, p50, p99 = _wrk(url, seconds, connections, script)
            samples[name].append((rps, p50, p99))
            print(
                f"  round {i + 1}/{rounds} {name:9s} {rps:9.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True
            )
    return samples


def _summary(
    scenario: str,
    what: str,
    samples: dict[str, list[tuple[float, float, float]]],
    measured: str,
    baseline: str,
    rounds: int,
    seconds: int,
    connections: int,
) -> dict[str, object]:
    def median(name: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[name])

    return {
        "scenario": scenario,
        "what": what,
        "connections": connections,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "measured_rps": median(measured, 0),
        "baseline_rps": median(baseline, 0),
        "ratio": median(measured, 0) / median(baseline, 0),
        "measured_p50_ms": median(measured, 1),
        "measured_p99_ms": median(measured, 2),
        "baseline_p50_ms": median(baseline, 1),
        "baseline_p99_ms": median(baseline, 2),
    }


def bench_ratelimit(rounds: int, seconds: int, connections: int) -> dict[str, object]:
    port = _free_port()
    env = {**os.environ, "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")}
    base = f"http://127.0.0.1:{port}"
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.ratelimit_app:app", "--port", str(port)]
    server = _start_server([*uvicorn, "--log-level", "warning", "--no-access-log"], env, f"{base}/limited")
    try:
        samples = _interleave(
            ("unlimited", f"{base}/unlimited", None), ("limited", f"{base}/limited", None), rounds, seconds, connections
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)

    return _summary(
        "ratelimit",
        "trivial JSON endpoint with one GCRA limit check vs without, same server",
        samples,
        "limited",
        "unlimited",
        rounds,
        seconds,
        connections,
    )


def _start_server(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([*_pin(0), *cmd], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    for _ in range(150):
        try:
            httpx.get(url, timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def bench_verify(rounds: int, seconds: int, connections: int) -> dict[str, object]:
    """GET /api/v1/auth/verify with a valid token (signature, claims, one Redis round trip for the
    per-user limit + revocation) vs a bare Litestar JSON endpoint, same uvicorn settings."""
    import secrets

    import asyncpg

    database = "auth_bench"
    admin_url = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

    async def recreate() -> None:
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
        await conn.close()

    import asyncio

    asyncio.run(recreate())
    env = {
        **os.environ,
        "DATABASE_URL": admin_url.rsplit("/", 1)[0] + f"/{database}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "RATE_LIMIT_VERIFY": "1000000000/minute",
        "RATE_LIMIT_LOGIN": "1000/minute",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    cli = [sys.executable, "-m", "auth_service"]
    subprocess.run([*cli, "migrate"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*cli, "create-user", "bench", "--email", "bench@example.com", "--password-stdin"],
        cwd=ROOT,
        env=env,
        input=b"bench password 123\n",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    api_port, bare_port = _free_port(), _free_port()
    service = _start_server([*cli, "api", "--port", str(api_port)], env, f"http://127.0.0.1:{api_port}/api/v1/health")
    bare = _start_server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
        f"http://127.0.0.1:{bare_port}/json",
    )
    try:
        login = httpx.post(
            f"http://127.0.0.1:{api_port}/api/v1/auth/login",
            json={"username": "bench", "password": "bench password 123"},
        )
        token = login.json()["access_token"]
        verify_url = f"http://127.0.0.1:{api_port}/api/v1/auth/verify"
        script = ROOT / "bench" / "results" / "auth.lua"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        samples = _interleave(
            ("bare", f"http://127.0.0.1:{bare_port}/json", None),
            ("verify", verify_url, script),
            rounds,
            seconds,
            connections,
        )
    finally:
        for server in (service, bare):
            server.send_signal(signal.SIGINT)
            server.wait(timeout=10)

    return _summary(
        "verify",
        "GET /api/v1/auth/verify, valid token, vs a bare Litestar JSON endpoint",
        samples,
        "verify",
        "bare",
        rounds,
        seconds,
        connections,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", action="append", choices=["ratelimit", "verify"], help="run only these scenarios")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    pinned = "server on core 0, wrk on core 1" if _pin(0) else "not pinned"
    print(f"bench: {machine}; {pinned}", flush=True)
    scenarios = {
        "ratelimit": ("one rate-limit check", "same trivial endpoint, unlimited", bench_ratelimit),
        "verify": ("verify (valid token)", "bare Litestar JSON endpoint", bench_verify),
    }
    results = []
    table = [
        "| scenario | baseline | req/s | baseline req/s | ratio | p50 / p99 ms | baseline p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.only or list(scenarios):
        label, baseline, run = scenarios[name]
        print(f"scenario {name}:", flush=True)
        r = run(args.rounds, args.seconds, args.connections)
        results.append(r)
        table.append(
            f"| {label} | {baseline} | {r['measured_rps']:.0f} | {r['baseline_rps']:.0f} | **{r['ratio']:.2f}** "
            f"| {r['measured_p50_ms']:.2f} / {r['measured_p99_ms']:.2f} | {r['baseline_p50_ms']:.2f} / {r['baseline_p99_ms']:.2f} |"
        )
    report = {"machine": machine, "pinning": pinned, "date": time.strftime("%Y-%m-%d"), "results": results}
    markdown = (
        f"Machine: {machine}; {pinned}; {args.connections} connections, medians of {args.rounds} rounds.\n\n"
        + "\n".join(table)
        + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown)
    print()
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
