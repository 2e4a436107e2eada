"""`just bench`: every figure a ratio against a baseline measured in the same run.

Scenarios (issue #6): ratelimit, verify, login, isolation, floods, refresh, account (the
self-service reads), mfa (the login's second step, issue #24), the OpenID Connect provider's
oauth-refresh, resource-server, well-known and oidc-provider (bench/oidc.py), admin (the admin listings on 1 M login records, issue #17), load (the seed
design's load tests and the enumeration timing). `--quick` (`just bench-quick`) runs short
rounds of verify, login and the load journeys in under a minute. Writes
bench/results/latest.json and latest.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

from bench import harness as h
from bench import scenarios as s
from bench.mfa import mfa
from bench.oidc import oauth_refresh, oidc_provider, resource_server, well_known

SCENARIOS = {
    "ratelimit": s.ratelimit,
    "verify": s.verify,
    "login": s.login,
    "isolation": s.isolation,
    "floods": s.floods,
    "refresh": s.refresh,
    "mfa": mfa,
    "oauth-refresh": oauth_refresh,
    "resource-server": resource_server,
    "well-known": well_known,
    "oidc-provider": oidc_provider,
    "account": s.account,
    "admin": s.admin,
    "load": s.seed_load,
}
QUICK = ["verify", "login", "load"]


def _cell(value: float, unit: str) -> str:
    if unit in ("ms", "% core", "% errors"):
        return f"{value:.1f} {unit}"
    return f"{value:,.0f} {unit}"


def table(rows: list[s.Row]) -> str:
    lines = [
        "| scenario | measured | value | baseline | baseline value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['scenario']} | {r['measured']} | {_cell(r['value'], r['unit'])} | {r['baseline']} "
            f"| {_cell(r['baseline_value'], r['unit'])} | **{r['ratio']:.2f}** | {r['target']} | {met} |"
        )
    details = [f"- {r['scenario']}: {r['detail']}" for r in rows if r["detail"]]
    return "\n".join(lines) + ("\n\n" + "\n".join(details) if details else "") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="short rounds of verify, login and load (< 60 s)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only these (repeatable)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    cfg = s.Config(args.rounds, args.seconds, args.connections, args.quick)
    names = args.only or list(SCENARIOS)
    if args.quick:
        cfg = s.Config(1, 2, args.connections, True)
        names = args.only or QUICK
    if h.pinning():
        os.sched_setaffinity(0, {h.LOAD_CORE})  # this process generates load too: keep it off the server's core
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    pinned = f"server on core {h.SERVER_CORE}, load (wrk, httpx) on core {h.LOAD_CORE}" if h.pinning() else "not pinned"
    print(f"bench: {machine}; {pinned}; {cfg.rounds} round(s) of {cfg.seconds:g} s", flush=True)
    started = time.monotonic()
    rows: list[s.Row] = []
    for name in names:
        print(f"scenario {name}:", flush=True)
        rows += SCENARIOS[name](cfg)
    elapsed = time.monotonic() - started
    markdown = (
        f"Machine: {machine}; {pinned}; {cfg.connections} connections for wrk; medians of {cfg.rounds} "
        f"interleaved round(s) of {cfg.seconds:g} s; whole run {elapsed / 60:.1f} min.\n\n" + table(rows)
    )
    report = {
        "machine": machine,
        "pinning": pinned,
        "date": time.strftime("%Y-%m-%d"),
        "config": vars(cfg),
        "seconds": elapsed,
        "results": rows,
    }
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "quick" if args.quick else "latest"
    (h.RESULTS / f"{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (h.RESULTS / f"{suffix}.md").write_text(markdown)
    print()
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
