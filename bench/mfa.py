"""The second step of a login (issue #24): POST /auth/mfa with a TOTP code against the password
login on the same server, interleaved. The second step hashes no password, so it must reach at
least 5 times the login's throughput.

Every second step needs a pending login of its own and a code its user has not used (a code is
accepted once), so the scenario gives each request a user of its own: the users, their TOTP rows
(sealed with the service's own `totp` purpose key) and their pending logins (the service's own
PendingLogins, as a password login leaves them) are written before the clock starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp

from bench import harness as h
from bench import load as lg
from bench.scenarios import LOGIN_CONNECTIONS, Config, Row, row

__all__ = ["mfa"]

PER_SECOND = 900  # pending logins made per measured second (above what one core finishes)
STEP_CONNECTIONS = 16


def _enrol(svc: h.Service, names: list[str]) -> list[tuple[str, str]]:
    """Confirmed TOTP for each user, straight into mfa_totp; (username, secret) pairs."""
    import asyncpg

    from auth_service.lib.crypto import totp
    from auth_service.settings import load_settings

    key = load_settings(svc.env, env_file=None).purpose_keys.key("totp")

    async def run() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(svc.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            ids = dict(await conn.fetch("SELECT username, id FROM users WHERE username = ANY($1::text[])", names))
            rows, pairs = [], []
            for name in names:
                secret = totp.new_secret()
                rows.append((ids[name], totp.encrypt_secret(key, secret, ids[name]), dt.datetime.now(dt.UTC)))
                pairs.append((name, secret))
            await conn.copy_records_to_table(
                "mfa_totp", records=rows, columns=["user_id", "secret_ciphertext", "confirmed_at"]
            )
            return pairs
        finally:
            await conn.close()

    return asyncio.run(run())


def _pending(svc: h.Service, users: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A pending login per user, from 127.0.0.1 (the load's address): (mfa_token, secret)."""
    import asyncpg

    from auth_service.container import Resources
    from auth_service.domain.auth.mfa.pending import PendingLogin
    from auth_service.settings import load_settings

    async def run() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(svc.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            ids = dict(
                await conn.fetch(
                    "SELECT username, id FROM users WHERE username = ANY($1::text[])", [u for u, _ in users]
                )
            )
        finally:
            await conn.close()
        resources = Resources(load_settings(svc.env, env_file=None))
        try:
            pending = resources.mfa.pending
            out: list[tuple[str, str]] = []
            for start in range(0, len(users), 200):
                batch = users[start : start + 200]
                tokens = await asyncio.gather(
                    *(
                        pending.create(
                            PendingLogin(ids[name], name, "127.0.0.1", None, None, ("totp", "recovery_code"))
                        )
                        for name, _ in batch
                    )
                )
                out += [(token, secret) for token, (_, secret) in zip(tokens, batch, strict=True)]
            return out
        finally:
            await resources.close()

    return asyncio.run(run())


def mfa(cfg: Config) -> list[Row]:
    per_round = int(PER_SECOND * cfg.seconds)
    total = per_round * cfg.rounds + int(PER_SECOND * cfg.warmup)
    with h.service(users=total + 1, RATE_LIMIT_MFA="1000000000/minute") as svc:
        steppers = [name for name in svc.users if name != "bench"]
        secrets = _enrol(svc, steppers)
        queue: Iterator[tuple[str, str]] = iter(_pending(svc, secrets))
        ran_out = [0]

        def second_step() -> lg.Step:
            async def step(http: httpx.AsyncClient) -> int:
                try:
                    token, secret = next(queue)
                except StopIteration:
                    ran_out[0] += 1
                    await asyncio.sleep(0.05)
                    return 200  # nothing sent (counted below: a round that ran out is an error)
                body: dict[str, Any] = {"mfa_token": token, "code": pyotp.TOTP(secret).now()}
                response = await http.post("/api/v1/auth/mfa", json=body)
                return response.status_code

            return step

        def steps(seconds: float) -> h.Run:
            load = asyncio.run(lg.closed_loop(svc.base, [second_step() for _ in range(STEP_CONNECTIONS)], seconds))
            if set(load.statuses) != {200} or ran_out[0]:
                raise RuntimeError(f"the second step answered {dict(load.statuses)}; ran out {ran_out[0]} times")
            return h.Run(load.rps, load.p50, load.pct(0.99), load.count)

        steps(cfg.warmup)
        login_url, script = f"{svc.base}/api/v1/auth/login", h.login_script()
        runs = h.interleave(
            {
                "login": lambda: h.wrk(login_url, cfg.seconds, LOGIN_CONNECTIONS, script),
                "second step": lambda: h.measured(svc.pid, lambda: steps(cfg.seconds)),
            },
            cfg.rounds,
        )
    second, login = runs["second step"], runs["login"]
    return [
        row(
            "mfa",
            f"POST /auth/mfa (TOTP), {STEP_CONNECTIONS} conns",
            second.rps,
            "POST /login (password only), same server",
            login.rps,
            "≥ 5",
            second.rps >= 5 * login.rps,
            detail=f"p50/p99 {second.p50:.1f}/{second.p99:.1f} ms; {second.cpu_us / 1000:.2f} ms CPU per second step "
            "(a pending login each, made before the clock: no password hash in it)",
        )
    ]
