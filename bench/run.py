"""`just bench`: measured figures, each as a ratio against a baseline from the same run.

Scenario `ratelimit`: requests/s of a rate-limited trivial endpoint vs the same endpoint
unlimited, same uvicorn server (1 worker), load from wrk, rounds interleaved.
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


def _wrk(url: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """Run wrk; return (requests/s, p50 ms, p99 ms)."""
    out = subprocess.run(
        [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
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


def bench_ratelimit(rounds: int, seconds: int, connections: int) -> dict[str, object]:
    port = _free_port()
    env = {**os.environ, "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")}
    server = subprocess.Popen(
        [
            *_pin(0),
            sys.executable,
            "-m",
            "uvicorn",
            "bench.ratelimit_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/limited", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        _wrk(base + "/unlimited", 2, connections)  # warm-up
        samples: dict[str, list[tuple[float, float, float]]] = {"unlimited": [], "limited": []}
        for i in range(rounds):
            for name in ("unlimited", "limited"):
                samples[name].append(_wrk(f"{base}/{name}", seconds, connections))
                rps, p50, p99 = samples[name][-1]
                print(
                    f"  round {i + 1}/{rounds} {name:9s} {rps:9.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms",
                    flush=True,
                )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)

    def median(name: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[name])

    return {
        "scenario": "ratelimit",
        "what": "trivial JSON endpoint with one GCRA limit check vs without, same server",
        "connections": connections,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "unlimited_rps": median("unlimited", 0),
        "limited_rps": median("limited", 0),
        "ratio": median("limited", 0) / median("unlimited", 0),
        "unlimited_p50_ms": median("unlimited", 1),
        "limited_p50_ms": median("limited", 1),
        "unlimited_p99_ms": median("unlimited", 2),
        "limited_p99_ms": median("limited", 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    pinned = "server on core 0, wrk on core 1" if _pin(0) else "not pinned"
    print(f"bench: {machine}; {pinned}", flush=True)
    print("scenario ratelimit:", flush=True)
    result = bench_ratelimit(args.rounds, args.seconds, args.connections)
    report = {"machine": machine, "pinning": pinned, "date": time.strftime("%Y-%m-%d"), "results": [result]}
    table = [
        "| scenario | baseline | req/s | baseline req/s | ratio | p50 / p99 ms | baseline p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
        f"| one rate-limit check | same endpoint, unlimited | {result['limited_rps']:.0f} | {result['unlimited_rps']:.0f} "
        f"| **{result['ratio']:.2f}** | {result['limited_p50_ms']:.2f} / {result['limited_p99_ms']:.2f} "
        f"| {result['unlimited_p50_ms']:.2f} / {result['unlimited_p99_ms']:.2f} |",
    ]
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
