"""The scenarios of `just bench` (issue #6). Each returns result rows: a measured figure, the
baseline it is divided by (measured in the same run, interleaved where both are rates), the
ratio, and the target it is held to."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from bench import harness as h
from bench import load as lg


@dataclass
class Config:
    rounds: int = 3
    seconds: float = 5.0
    connections: int = 32
    quick: bool = False

    @property
    def warmup(self) -> float:
        return 1 if self.quick else 2


Row = dict[str, Any]
found: dict[str, float] = {}  # figures later scenarios reuse (login capacity, hash time)


def row(
    scenario: str,
    measured: str,
    value: float,
    baseline: str,
    base_value: float,
    target: str,
    met: bool | None,
    *,
    ratio: float | None = None,
    unit: str = "req/s",
    detail: str = "",
) -> Row:
    return {
        "scenario": scenario,
        "measured": measured,
        "value": value,
        "baseline": baseline,
        "baseline_value": base_value,
        "ratio": ratio if ratio is not None else (value / base_value if base_value else 0.0),
        "unit": unit,
        "target": target,
        "met": met,
        "detail": detail,
    }


# --- one rate-limit check -------------------------------------------------------------------


def ratelimit(cfg: Config) -> list[Row]:
    port = h.free_port()
    env = {**os.environ, "REDIS_URL": h.REDIS_URL}
    cmd = [sys.executable, "-m", "uvicorn", "bench.ratelimit_app:app", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    server = h.start([*cmd, "--log-level", "warning", "--no-access-log"], env, f"{base}/limited")
    try:
        runs = h.interleave(
            {
                "unlimited": lambda: h.measured(server.pid, lambda: h.wrk(f"{base}/unlimited", cfg.seconds, 32)),
                "limited": lambda: h.measured(server.pid, lambda: h.wrk(f"{base}/limited", cfg.seconds, 32)),
            },
            cfg.rounds,
        )
    finally:
        h.stop(server)
    limited, unlimited = runs["limited"], runs["unlimited"]
    return [
        row(
            "ratelimit",
            "trivial endpoint + one GCRA check (redis-py)",
            limited.rps,
            "same endpoint, no check",
            unlimited.rps,
            "(context)",
            None,
            detail=f"p50/p99 {limited.p50:.1f}/{limited.p99:.1f} ms; {limited.cpu_us:.0f} vs {unlimited.cpu_us:.0f} µs CPU/req",
        )
    ]


# --- verify ---------------------------------------------------------------------------------


def verify(cfg: Config) -> list[Row]:
    with h.service() as svc, h.bare() as (bare_url, bare_pid), h.bare("bench.stack_app") as (stack_url, stack_pid):
        token = h.login(svc.base)["access_token"]
        script = h.bearer_script(token)
        url = f"{svc.base}/api/v1/auth/verify"
        for target, lua in ((bare_url, None), (stack_url, None), (url, script)):
            h.wrk(target, cfg.warmup, cfg.connections, lua)  # warm-up
        pg_before = _pg_transactions(svc.database_url)
        runs = h.interleave(
            {
                "bare": lambda: h.measured(bare_pid, lambda: h.wrk(bare_url, cfg.seconds, cfg.connections)),
                "bare + our stack": lambda: h.measured(
                    stack_pid, lambda: h.wrk(stack_url, cfg.seconds, cfg.connections)
                ),
                "verify": lambda: h.measured(svc.pid, lambda: h.wrk(url, cfg.seconds, cfg.connections, script)),
            },
            cfg.rounds,
        )
        pg_queries = _pg_transactions(svc.database_url) - pg_before - 1  # minus our own first read
    v, b, st = runs["verify"], runs["bare"], runs["bare + our stack"]
    return [
        row(
            "verify",
            f"GET /verify, valid token, {cfg.connections} conns",
            v.rps,
            "bare Litestar JSON endpoint",
            b.rps,
            "≥ 0.45",
            v.rps / b.rps >= 0.45,
            detail=f"p50/p99 {v.p50:.1f}/{v.p99:.1f} ms (bare {b.p50:.1f}/{b.p99:.1f}); "
            f"{v.cpu_us:.0f} vs {b.cpu_us:.0f} µs CPU/req; {pg_queries} PostgreSQL transactions "
            f"during {v.requests} verifies",
        ),
        row(
            "verify, split",
            "the bare endpoint inside our per-request stack",
            st.rps,
            "bare Litestar JSON endpoint",
            b.rps,
            "(context)",
            None,
            detail=f"request id, server span (1 % sampled), HTTP histogram, header hooks, envelope; "
            f"{st.cpu_us:.0f} µs CPU/req; verify / this = {v.rps / st.rps:.2f}",
        ),
        row(
            "verify p99",
            "verify p99 (ms)",
            v.p99,
            "3 × verify p50",
            3 * v.p50,
            "≤ 1.0",
            v.p99 <= 3 * v.p50,
            unit="ms",
        ),
    ]


def _pg_transactions(database_url: str) -> int:
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        finally:
            await conn.close()

    time.sleep(0.6)  # backends flush pg_stat at most every 500 ms
    return asyncio.run(read())


# --- login vs the argon2 ceiling ---------------------------------------------------------------


def argon2_rate(seconds: float) -> float:
    out = subprocess.run(
        [*h.pin(h.SERVER_CORE), sys.executable, "-m", "bench.argon2_baseline", "--seconds", str(seconds)],
        cwd=h.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)["rps"])


LOGIN_CONNECTIONS = 16  # enough to keep every hashing thread busy (the hash queue holds 64)


def login(cfg: Config) -> list[Row]:
    with h.service() as svc:
        url = f"{svc.base}/api/v1/auth/login"
        script = h.login_script()
        h.wrk(url, cfg.warmup, LOGIN_CONNECTIONS, script)
        loop_cpu: list[float] = []

        def logins() -> h.Run:
            before = h.cpu_seconds(svc.pid, svc.pid)  # the event loop's thread
            run = h.measured(svc.pid, lambda: h.wrk(url, cfg.seconds, LOGIN_CONNECTIONS, script))
            loop_cpu.append((h.cpu_seconds(svc.pid, svc.pid) - before) * 1000 / max(1, run.requests))
            return run

        runs = h.interleave(
            {"argon2id alone": lambda: h.Run(argon2_rate(cfg.seconds), 0, 0), "login": logins}, cfg.rounds
        )
    ceiling, logins = runs["argon2id alone"], runs["login"]
    found["login_rps"] = logins.rps
    found["hash_seconds"] = 1 / ceiling.rps
    cores = "1 core" if h.pinning() else f"{os.cpu_count()} cores"
    return [
        row(
            "login",
            f"POST /login (argon2id m=19 MiB t=2 p=1), {LOGIN_CONNECTIONS} conns",
            logins.rps,
            f"argon2id verify alone, same params, {cores}",
            ceiling.rps,
            "≥ 0.90",
            logins.rps / ceiling.rps >= 0.9,
            detail=f"p50/p99 {logins.p50:.0f}/{logins.p99:.0f} ms; {logins.cpu_us / 1000:.1f} ms CPU/login, of which "
            f"{statistics.median(loop_cpu):.1f} ms on the event loop (one argon2id verify alone: "
            f"{1000 / ceiling.rps:.1f} ms)",
        )
    ]


def _login_capacity(svc: h.Service, seconds: float) -> float:
    if "login_rps" not in found:
        found["login_rps"] = h.wrk(f"{svc.base}/api/v1/auth/login", seconds, LOGIN_CONNECTIONS, h.login_script()).rps
    if "hash_seconds" not in found:
        found["hash_seconds"] = 1 / argon2_rate(seconds)
    return found["login_rps"]


# --- isolation: verify while logins hash ----------------------------------------------------------


def isolation(cfg: Config) -> list[Row]:
    with h.service() as svc:
        capacity = _login_capacity(svc, cfg.seconds)
        rate = 0.25 * capacity
        token = h.login(svc.base)["access_token"]
        url, script = f"{svc.base}/api/v1/auth/verify", h.bearer_script(token)
        h.wrk(url, cfg.warmup, cfg.connections, script)
        achieved: list[float] = []

        def with_logins() -> h.Run:
            result: dict[str, lg.Load] = {}

            async def step(http: httpx.AsyncClient) -> int:
                body = {"username": "bench", "password": h.PASSWORD}
                return (await http.post("/api/v1/auth/login", json=body)).status_code

            pacer = threading.Thread(
                target=lambda: result.setdefault("l", asyncio.run(lg.paced(svc.base, step, rate, cfg.seconds + 1)))
            )
            pacer.start()
            time.sleep(0.5)
            run = h.wrk(url, cfg.seconds, cfg.connections, script)
            pacer.join()
            achieved.append(result["l"].rps)
            if set(result["l"].statuses) != {200}:
                print(f"  logins during verify load answered {dict(result['l'].statuses)}", flush=True)
            return run

        runs = h.interleave(
            {"verify alone": lambda: h.wrk(url, cfg.seconds, cfg.connections, script), "verify + logins": with_logins},
            cfg.rounds,
        )
    alone, loaded = runs["verify alone"], runs["verify + logins"]
    share = statistics.median(achieved) * found["hash_seconds"] / (1 if h.pinning() else (os.cpu_count() or 1))
    floor = 0.9 * (1 - share) * alone.rps
    return [
        row(
            "isolation",
            f"verify req/s with logins at 25 % of capacity ({rate:.1f}/s)",
            loaded.rps,
            f"0.9 × (1 − hashing share {share:.2f}) × verify alone",
            floor,
            "≥ 1.0",
            loaded.rps >= floor,
            detail=f"verify alone {alone.rps:.0f} req/s",
        ),
        row(
            "isolation p99",
            "verify p99 with logins (ms)",
            loaded.p99,
            "verify p99 alone",
            alone.p99,
            "≤ 1.5",
            loaded.p99 <= 1.5 * alone.p99,
            unit="ms",
        ),
    ]


# --- floods ---------------------------------------------------------------------------------------


def floods(cfg: Config) -> list[Row]:
    rows: list[Row] = []
    with h.service(RATE_LIMIT_LOGIN="5/minute") as svc:  # the default limit
        flood_rate = 10 * 5 / 60  # 10x the limit: 50 attempts a minute

        async def wrong(http: httpx.AsyncClient) -> int:
            body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong password 123"}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

        # Spend the burst allowance first (those 5 attempts are hashed, as they should be); then
        # measure the steady state: one attempt in ten gets through, the rest are refused.
        asyncio.run(lg.burst(svc.base, wrong, 5))
        window = 30.0 if not cfg.quick else 12.0
        before = h.cpu_seconds(svc.pid)
        flood = asyncio.run(lg.paced(svc.base, wrong, flood_rate, window))
        core_share = (h.cpu_seconds(svc.pid) - before) / flood.seconds
        rows.append(
            row(
                "flood",
                f"server CPU while one IP sends 10× the login limit (5/minute) for {window:.0f} s",
                core_share * 100,
                "5 % of one core",
                5.0,
                "≤ 1.0",
                core_share <= 0.05,
                unit="% core",
                detail=f"answers {dict(flood.statuses)}; includes the background work of an idle server",
            )
        )
        # The price of one refusal, at full speed.
        refused = h.measured(
            svc.pid,
            lambda: h.wrk(
                f"{svc.base}/api/v1/auth/login", cfg.seconds, 16, h.login_script("x", "y" * 12), allow_errors=True
            ),
        )
        rows.append(
            row(
                "flood",
                "CPU per refused login (µs), wrk at full speed",
                refused.cpu_us,
                "CPU of one argon2id verify (µs)",
                1e6 * found.get("hash_seconds", 1 / argon2_rate(3)),
                "(context)",
                None,
                unit="µs",
                detail=f"{refused.rps:.0f} refusals/s",
            )
        )
    with h.service() as svc:

        async def good(http: httpx.AsyncClient) -> int:
            body = {"username": "bench", "password": h.PASSWORD}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

        rss_before = h.rss_mib(svc.pid)
        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(h.rss_mib(svc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        burst = asyncio.run(lg.burst(svc.base, good, 200))
        stop.set()
        sampler.join()
        statuses = dict(burst.statuses)
        bounded = set(statuses) <= {200, 429, 503} and statuses.get(503, 0) > 0
        rows.append(
            row(
                "200 concurrent logins",
                "peak RSS (MiB)",
                max(peak),
                "RSS before (MiB)",
                rss_before,
                "503 beyond the hash queue",
                bounded,
                unit="MiB",
                detail=f"answers {statuses} in {burst.seconds:.1f} s",
            )
        )
    return rows


# --- refresh --------------------------------------------------------------------------------------


def refresh(cfg: Config) -> list[Row]:
    with h.service(users=16) as svc:
        login_url, script = f"{svc.base}/api/v1/auth/login", h.login_script()
        sessions = [h.login(svc.base, name)["refresh_token"] for name in svc.users]

        def rotate(i: int) -> lg.Step:
            async def step(http: httpx.AsyncClient) -> int:
                response = await http.post("/api/v1/auth/refresh", json={"refresh_token": sessions[i]})
                if response.status_code == 200:
                    sessions[i] = response.json()["refresh_token"]
                return response.status_code

            return step

        def refreshes() -> h.Run:
            load = asyncio.run(lg.closed_loop(svc.base, [rotate(i) for i in range(len(sessions))], cfg.seconds))
            if set(load.statuses) != {200}:
                raise RuntimeError(f"refresh answered {dict(load.statuses)}")
            return h.Run(load.rps, load.p50, load.pct(0.99), load.count)

        runs = h.interleave(
            {
                "login": lambda: h.wrk(login_url, cfg.seconds, LOGIN_CONNECTIONS, script),
                "refresh": lambda: h.measured(svc.pid, refreshes),
            },
            cfg.rounds,
        )
    r, lgn = runs["refresh"], runs["login"]
    return [
        row(
            "refresh",
            "POST /refresh, 16 sessions rotating",
            r.rps,
            "POST /login, same server",
            lgn.rps,
            "≥ 8",
            r.rps >= 8 * lgn.rps,
            detail=f"p50/p99 {r.p50:.1f}/{r.p99:.1f} ms; {r.cpu_us / 1000:.2f} ms CPU/refresh",
        )
    ]


# --- the account's own endpoints ----------------------------------------------------------------


def account(cfg: Config) -> list[Row]:
    """The self-service reads (sessions, login history) and the reset request, each against verify
    (the cheapest authenticated call) on the same server."""
    with h.service(users=16, RATE_LIMIT_EMAIL="1000000000/hour", RATE_LIMIT_EMAIL_IP="1000000000/hour") as svc:
        tokens = [h.login(svc.base, name)["access_token"] for name in svc.users]

        def get(path: str) -> Callable[[], h.Run]:
            def steps() -> list[lg.Step]:
                def one(token: str) -> lg.Step:
                    async def step(http: httpx.AsyncClient) -> int:
                        response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                        return response.status_code

                    return step

                return [one(token) for token in tokens]

            def run() -> h.Run:
                load = asyncio.run(lg.closed_loop(svc.base, steps(), cfg.seconds))
                if set(load.statuses) != {200}:
                    raise RuntimeError(f"{path} answered {dict(load.statuses)}")
                return h.Run(load.rps, load.p50, load.pct(0.99), load.count)

            return run

        def resets() -> h.Run:
            async def step(http: httpx.AsyncClient) -> int:
                return (
                    await http.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
                ).status_code

            load = asyncio.run(lg.closed_loop(svc.base, [step] * 16, cfg.seconds))
            if set(load.statuses) != {202}:
                raise RuntimeError(f"password-reset answered {dict(load.statuses)}")
            return h.Run(load.rps, load.p50, load.pct(0.99), load.count)

        runs = h.interleave(
            {
                "verify": lambda: h.measured(svc.pid, get("/api/v1/auth/verify")),
                "sessions": lambda: h.measured(svc.pid, get("/api/v1/users/me/sessions")),
                "logins": lambda: h.measured(svc.pid, get("/api/v1/users/me/logins?limit=20")),
                "reset": lambda: h.measured(svc.pid, resets),
            },
            cfg.rounds,
        )
    base = runs["verify"]
    rows = []
    for name, measured in (
        ("sessions", "GET /users/me/sessions, 16 users"),
        ("logins", "GET /users/me/logins?limit=20, 16 users"),
        ("reset", "POST /auth/password-reset, unknown address"),
    ):
        r = runs[name]
        rows.append(
            row(
                f"account {name}",
                measured,
                r.rps,
                "GET /verify, same server",
                base.rps,
                "—",
                None,
                detail=f"p50/p99 {r.p50:.1f}/{r.p99:.1f} ms; {r.cpu_us / 1000:.2f} ms CPU/request",
            )
        )
    return rows


# --- the admin listings (issue #17) -------------------------------------------------------------------


def _p95_of(base: str, token: str, paths: list[str], seconds: float) -> tuple[float, float]:
    """p95 and p50 (ms) of GETs cycling over `paths`, 4 clients in a closed loop."""

    def one(offset: int) -> lg.Step:
        index = [offset]

        async def step(http: httpx.AsyncClient) -> int:
            path = paths[index[0] % len(paths)]
            index[0] += 1
            return (await http.get(path, headers={"Authorization": f"Bearer {token}"})).status_code

        return step

    load = asyncio.run(lg.closed_loop(base, [one(i) for i in range(4)], seconds))
    if set(load.statuses) != {200}:
        raise RuntimeError(f"admin listing answered {dict(load.statuses)}")
    return load.pct(0.95), load.p50


def _walk_cursor(base: str, token: str, query: str, pages: int) -> str:
    """The cursor of page `pages` of a walk (each page 50 records)."""
    cursor = ""
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(pages - 1):
            body = http.get(
                f"/api/v1/admin/login-records?{query}&limit=50" + (f"&cursor={cursor}" if cursor else "")
            ).json()
            cursor = body["next_cursor"]
            if cursor is None:
                raise RuntimeError(f"the walk ended before page {pages}")
    return cursor


def _admin_statements(env: dict[str, str]) -> tuple[int, int, int]:
    """(statements, audit inserts, transactions) of one role change through AdminService, counted
    on the engine: the change, the revocation of the user's tokens, and its audit event."""
    import logging

    import structlog
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.container import Resources
    from auth_service.domain.admin.schemas import AdminUserPatch
    from auth_service.domain.admin.service import AdminService
    from auth_service.lib.audit import Actor
    from auth_service.settings import load_settings

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> tuple[int, int, int]:
        settings = load_settings(env, env_file=None)
        engine = create_async_engine(settings.database.url)
        resources = Resources(settings, async_sessionmaker(engine, expire_on_commit=False))
        seen: list[str] = []
        commits = [0]
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(str(a[2])))
        event.listen(engine.sync_engine, "commit", lambda *a: commits.__setitem__(0, commits[0] + 1))
        try:
            async with resources.session_factory() as session:
                user_id = (await session.execute(text("SELECT id FROM users WHERE username = 'bench1'"))).scalar_one()
                await session.rollback()
                seen.clear()
                commits[0] = 0
                admin = AdminService(session, resources.hasher, resources.revocation, resources.password_policy)
                await admin.update(user_id, AdminUserPatch(roles=["bench", "user"]), Actor(via="bench"))
        finally:
            await resources.close()
            await engine.dispose()
        audit = sum("audit_events" in statement for statement in seen)
        return len(seen), audit, commits[0]

    return asyncio.run(run())


def admin(cfg: Config) -> list[Row]:
    """Admin listings of login records by user, IP and time window: from an empty table, then from
    1,000,000 rows (p95 within 2x); page 200 of a walk against page 1 (keyset: the same cost); the
    statements of an admin change (one audit insert beside the change, one transaction)."""
    with h.service(users=21, RATE_LIMIT_API="1000000000/minute") as svc:
        h._admin("UPDATE users SET roles = '{admin}' WHERE username = 'bench'", svc.database_url)
        token = h.login(svc.base)["access_token"]
        import asyncpg

        async def ids() -> list[str]:
            conn = await asyncpg.connect(svc.database_url)
            try:
                return [str(r["id"]) for r in await conn.fetch("SELECT id FROM users ORDER BY username LIMIT 8")]
            finally:
                await conn.close()

        users = asyncio.run(ids())
        now = dt.datetime.now(dt.UTC)

        def window(hours_ago: int) -> str:
            start = now - dt.timedelta(hours=hours_ago + 1)
            return f"since={start:%Y-%m-%dT%H:%M:%S}&until={start + dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%S}"

        queries = {
            "user": [f"/api/v1/admin/login-records?user_id={u}&limit=50" for u in users],
            "ip": [f"/api/v1/admin/login-records?ip=10.{i}.0.{i % 7}&limit=50" for i in range(0, 64, 8)],
            "time window": [f"/api/v1/admin/login-records?{window(h_)}&limit=50" for h_ in range(2, 200, 24)],
        }
        seconds = max(2.0, cfg.seconds / 2)
        for paths in queries.values():  # warm-up (pools, first requests), not measured
            _p95_of(svc.base, token, paths, 1.0)
        empty = {name: _p95_of(svc.base, token, paths, seconds) for name, paths in queries.items()}
        seeded_rows = _seed_login_records(svc.database_url, 10_000 if cfg.quick else 1_000_000)
        seeded = {name: _p95_of(svc.base, token, paths, seconds) for name, paths in queries.items()}
        rows = [
            row(
                "admin listing",
                f"50 login records by {name}, p95 (ms) from {seeded_rows:,} rows",
                seeded[name][0],
                "the same from an empty table",
                empty[name][0],
                "≤ 2×",
                seeded[name][0] <= 2 * empty[name][0],
                ratio=seeded[name][0] / empty[name][0] if empty[name][0] else 0.0,
                unit="ms",
                detail=f"p50 {empty[name][1]:.1f} → {seeded[name][1]:.1f} ms",
            )
            for name in queries
        ]
        pages = 20 if cfg.quick else 200
        deep = _walk_cursor(svc.base, token, "success=true", pages)
        first = ["/api/v1/admin/login-records?success=true&limit=50"]
        deep_path = [f"/api/v1/admin/login-records?success=true&limit=50&cursor={deep}"]
        samples: dict[str, list[tuple[float, float]]] = {"first": [], "deep": []}
        for i in range(cfg.rounds):  # interleaved, medians of the rounds
            for name, paths in (("first", first), ("deep", deep_path)):
                samples[name].append(_p95_of(svc.base, token, paths, seconds))
                print(f"  round {i + 1}/{cfg.rounds} page {name}: p95 {samples[name][-1][0]:.2f} ms", flush=True)
        page_one, page_deep = (
            (statistics.median(p for p, _ in samples[n]), statistics.median(q for _, q in samples[n]))
            for n in ("first", "deep")
        )
        rows.append(
            row(
                "admin listing",
                f"page {pages} of a walk (50 a page), p95 (ms)",
                page_deep[0],
                "page 1, same filter",
                page_one[0],
                "≤ 1.25× (keyset, not OFFSET)",
                page_deep[0] <= 1.25 * page_one[0],
                ratio=page_deep[0] / page_one[0] if page_one[0] else 0.0,
                unit="ms",
            )
        )
        statements, audit, commits = _admin_statements(svc.env)
        rows.append(
            row(
                "admin action",
                "statements of a role change (lock, update, revoke, audit)",
                statements,
                "the same change without its audit insert",
                statements - audit,
                "audit +1 statement, 1 transaction",
                audit == 1 and commits == 1,
                ratio=statements / (statements - audit),
                unit="statements",
                detail=f"{audit} audit insert, {commits} commit",
            )
        )
    return rows


# --- the seed design's load tests (11.3) and enumeration timing ---------------------------------------


def seed_load(cfg: Config) -> list[Row]:
    rows: list[Row] = []
    users = 20
    with h.service(users=users + 1, RATE_LIMIT_LOGIN="1000000000/minute") as svc:
        # 1. User journeys: login -> verify x N -> refresh -> verify -> logout -> verify (401).
        rows.append(_journeys(svc, svc.users[1:], verifies=10))
        # 2. Token generation.
        rows.append(_token_generation())
        # 3. Database under load: login and refresh p95 with 1 M login_records vs an empty table.
        if not cfg.quick:
            empty = _login_refresh_p95(svc, cfg.seconds)
            seeded_rows = _seed_login_records(svc.database_url, 1_000_000)
            seeded = _login_refresh_p95(svc, cfg.seconds)
            for name in ("login", "refresh"):
                rows.append(
                    row(
                        "database under load",
                        f"{name} p95 (ms) with {seeded_rows:,} login_records",
                        seeded[name],
                        f"{name} p95 with an empty table",
                        empty[name],
                        "(context)",
                        None,
                        unit="ms",
                    )
                )
    if cfg.quick:  # bench-quick: the journeys and token generation only
        return rows
    # 4. Rate limits under load: exact counts.
    with h.service(RATE_LIMIT_LOGIN="7/minute") as svc:

        async def attempt(http: httpx.AsyncClient) -> int:
            body = {"username": "bench", "password": h.PASSWORD}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

        burst = asyncio.run(lg.burst(svc.base, attempt, 60))
        allowed = burst.statuses.get(200, 0)
        rows.append(
            row(
                "rate limit under load",
                "logins let through of 60 concurrent, limit 7/minute",
                allowed,
                "the limit",
                7,
                "= 1.0",
                allowed == 7,
                unit="requests",
                detail=f"answers {dict(burst.statuses)}",
            )
        )
    rows.append(_enumeration(50))
    return rows


def _journeys(svc: h.Service, names: list[str], verifies: int) -> Row:
    errors: list[str] = []
    latencies: dict[str, list[float]] = {"login": [], "verify": [], "refresh": [], "logout": []}

    async def timed(name: str, call: Any) -> httpx.Response:
        started = time.perf_counter()
        response = await call
        latencies[name].append((time.perf_counter() - started) * 1000)
        return response

    async def journey(http: httpx.AsyncClient, name: str) -> None:
        def expect(response: httpx.Response, status: int, what: str) -> None:
            if response.status_code != status:
                errors.append(f"{what}: {response.status_code}")

        body = {"username": name, "password": h.PASSWORD}
        tokens = (await timed("login", http.post("/api/v1/auth/login", json=body))).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        for _ in range(verifies):
            expect(await timed("verify", http.get("/api/v1/auth/verify", headers=auth)), 200, "verify")
        response = await timed(
            "refresh", http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        )
        expect(response, 200, "refresh")
        fresh = response.json()
        auth = {"Authorization": f"Bearer {fresh['access_token']}"}
        expect(await timed("verify", http.get("/api/v1/auth/verify", headers=auth)), 200, "verify after refresh")
        logout = http.post("/api/v1/auth/logout", headers=auth, json={"refresh_token": fresh["refresh_token"]})
        expect(await timed("logout", logout), 204, "logout")
        expect(await http.get("/api/v1/auth/verify", headers=auth), 401, "verify after logout")

    async def run_all() -> float:
        async with lg.client(svc.base, len(names)) as http:
            started = time.perf_counter()
            await asyncio.gather(*(journey(http, name) for name in names))
            return time.perf_counter() - started

    seconds = asyncio.run(run_all())
    requests = len(names) * (verifies + 5)
    p95 = {k: sorted(v)[int(0.95 * (len(v) - 1))] for k, v in latencies.items() if v}
    return row(
        "user journeys",
        f"{len(names)} concurrent users: login, {verifies} verifies, refresh, verify, logout, verify",
        100 * len(errors) / requests,
        "error rate 0 %",
        0.0,
        "= 0 %",
        not errors,
        ratio=0.0 if not errors else float(len(errors)),
        unit="% errors",
        detail=f"{requests} requests in {seconds:.1f} s; p95 ms " + ", ".join(f"{k} {v:.0f}" for k, v in p95.items()),
    )


def _token_generation() -> Row:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from auth_service.lib.crypto.tokens import TokenService

    secret = os.urandom(32).hex()
    tokens = TokenService(
        algorithm="HS256",
        secret=secret,
        private_key_file="",
        public_key_file="",
        key_id="",
        issuer="auth-service",
        audience="auth-service-clients",
        access_ttl=900,
    )
    key = OctKey.import_key(secret.encode())

    def rate(make: Callable[[], object], seconds: float = 1.5) -> float:
        n, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            make()
            n += 1
        return n / seconds

    ours = rate(
        lambda: tokens.issue_access(
            user_id=str(uuid.uuid4()), username="u", roles=["user"], session_id=str(uuid.uuid4())
        )
    )
    raw = rate(lambda: jwt.encode({"alg": "HS256"}, {"sub": str(uuid.uuid4()), "exp": 1}, key))
    return row(
        "token generation",
        "access tokens issued per second, one thread",
        ours,
        "bare joserfc HS256 encode of a 2-claim token",
        raw,
        "(context)",
        None,
        unit="tokens/s",
    )


def _login_refresh_p95(svc: h.Service, seconds: float) -> dict[str, float]:
    sessions = [h.login(svc.base, name)["refresh_token"] for name in svc.users[1:9]]

    async def do_login(http: httpx.AsyncClient) -> int:
        body = {"username": "bench", "password": h.PASSWORD}
        return (await http.post("/api/v1/auth/login", json=body)).status_code

    def rotate(i: int) -> lg.Step:
        async def step(http: httpx.AsyncClient) -> int:
            response = await http.post("/api/v1/auth/refresh", json={"refresh_token": sessions[i]})
            if response.status_code == 200:
                sessions[i] = response.json()["refresh_token"]
            return response.status_code

        return step

    logins = asyncio.run(lg.closed_loop(svc.base, [do_login] * 2, seconds))
    refreshes = asyncio.run(lg.closed_loop(svc.base, [rotate(i) for i in range(len(sessions))], seconds))
    return {"login": logins.pct(0.95), "refresh": refreshes.pct(0.95)}


def _seed_login_records(database_url: str, count: int) -> int:
    import asyncpg

    async def seed() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            started = time.perf_counter()
            await conn.execute(
                """
                INSERT INTO login_records (id, user_id, username, ip_address, user_agent, success,
                                           login_timestamp, failure_reason)
                SELECT gen_random_uuid(),
                       CASE WHEN g % 4 = 0 THEN NULL ELSE u.id END,
                       CASE WHEN g % 4 = 0 THEN 'ghost' || (g % 5000) ELSE u.username END,
                       '10.' || (g % 250) || '.' || ((g / 250) % 250) || '.' || (g % 7),
                       'bench-agent/1.0', g % 5 <> 0,
                       now() - (g % 7776000) * interval '1 second',
                       CASE WHEN g % 5 = 0 THEN 'bad_password' END
                FROM generate_series(1, $1) AS g
                JOIN LATERAL (SELECT id, username FROM users ORDER BY id OFFSET (g % 20) LIMIT 1) AS u ON true
                """,
                count,
            )
            await conn.execute("ANALYZE login_records")
            print(f"  seeded {count:,} login_records in {time.perf_counter() - started:.1f} s", flush=True)
            return int(await conn.fetchval("SELECT count(*) FROM login_records"))
        finally:
            await conn.close()

    return asyncio.run(seed())


def _enumeration(tries: int = 50) -> Row:
    """Unknown user, wrong password and disabled account: medians of the same status/body."""
    with h.service(users=2, RATE_LIMIT_LOGIN_FAILURES="1000000/minute") as svc:
        h._admin("UPDATE users SET is_active = false WHERE username = 'bench1'", svc.database_url)
        cases = {
            "unknown user": {"username": "nobody-at-all", "password": h.PASSWORD},
            "wrong password": {"username": "bench", "password": "wrong password 123"},
            "disabled account": {"username": "bench1", "password": h.PASSWORD},
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        bodies: dict[str, set[str]] = {name: set() for name in cases}
        with httpx.Client(base_url=svc.base, timeout=30) as http:
            for _ in range(tries):
                for name, body in cases.items():  # interleaved, so drift hits every case alike
                    started = time.perf_counter()
                    response = http.post("/api/v1/auth/login", json=body)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    payload = response.json()
                    for varying in ("request_id", "timestamp"):  # differ on every response by design
                        payload.get("error", payload).pop(varying, None)
                    bodies[name].add(f"{response.status_code} {json.dumps(payload, sort_keys=True)}")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    spread = max(medians.values()) / min(medians.values())
    same = len(set().union(*bodies.values())) == 1
    return row(
        "enumeration timing",
        "slowest / fastest median login failure",
        max(medians.values()),
        "fastest median",
        min(medians.values()),
        "≤ 1.10, same status and body",
        spread <= 1.10 and same,
        ratio=spread,
        unit="ms",
        detail=", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()) + ("" if same else "; BODIES DIFFER"),
    )
