"""The OpenID Connect provider's rows: every figure against a baseline measured in the same run.

- `oauth-refresh`: POST /oauth2/token with grant_type=refresh_token (a confidential client,
  client_secret_basic), 16 sessions each rotating its own token, against the password login on
  the same server (target ≥ 8, as /auth/refresh has); /auth/refresh beside it, for context.
- `resource-server`: a bare Litestar resource server that verifies our ES256 access token
  locally (joserfc, keys fetched once from /.well-known/jwks.json) against the same server's
  route without the check (target ≥ 0.8).
- `well-known`: /.well-known/openid-configuration and /.well-known/jwks.json against a bare
  Litestar app serving the same bytes, same uvicorn settings (target ≥ 0.8 each).

The sessions are made through the code flow as a browser would (authorize → /login form →
code → token), before the clock; the users are the bench's (bench1, …), the client is
registered through the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench import harness as h
from bench import load as lg
from bench.scenarios import LOGIN_CONNECTIONS, Config, Row, row

__all__ = ["oauth_refresh", "resource_server", "well_known"]

REDIRECT = "https://app.example.com/callback"
SESSIONS = 16  # refreshing sessions, as the /auth/refresh scenario
SCOPE = "openid offline_access"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str

    @property
    def basic(self) -> str:
        """client_secret_basic (RFC 6749 §2.3.1: each part form-encoded, then base64)."""
        pair = f"{self.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize_query(client_id: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return urlencode(params)


def _code_of(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "code" not in query:
        raise RuntimeError(f"the authorization ended without a code: {location}")
    return query["code"][0]


def _exchange(http: httpx.Client, path: str, client: Client, code: str, verifier: str) -> dict[str, str]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    response = http.post(path, data=form, headers={"Authorization": client.basic})
    if response.status_code != 200:
        raise RuntimeError(f"the code exchange answered {response.status_code}: {response.text}")
    tokens: dict[str, str] = response.json()
    return tokens


# --- our provider ----------------------------------------------------------------------------


def register_client(svc: h.Service) -> Client:
    """A first-party confidential client (no consent page), through the admin API."""
    h._admin("UPDATE users SET roles = '{admin,user}' WHERE username = 'bench'", svc.database_url)
    admin = h.login(svc.base)["access_token"]
    body = {
        "name": "bench app",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": SCOPE.split(),
        "first_party": True,
    }
    response = httpx.post(
        f"{svc.base}/api/v1/admin/clients", json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    if response.status_code != 201:
        raise RuntimeError(f"registering the client answered {response.status_code}: {response.text}")
    created = response.json()
    return Client(created["client_id"], created["client_secret"])


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    if not found:
        raise RuntimeError(f"the login form has no {name} field")
    return found.group(1).replace("&amp;", "&").replace("&#39;", "'").replace("&quot;", '"')


def our_sessions(svc: h.Service, client: Client, username: str, count: int) -> list[dict[str, str]]:
    """`count` sessions of one user through the code flow: one sign-in on the /login form (its
    cookie then stands for the browser), then an authorization and a code exchange each."""
    out: list[dict[str, str]] = []
    with httpx.Client(base_url=svc.base, timeout=30, follow_redirects=False) as http:
        for i in range(count):
            verifier, challenge = _pkce()
            response = http.get(f"/oauth2/authorize?{_authorize_query(client.client_id, challenge)}")
            if i == 0:
                if response.status_code != 302 or not response.headers["location"].startswith("/login"):
                    raise RuntimeError(f"authorize did not send to /login: {response.status_code} {response.text}")
                page = http.get(response.headers["location"])
                form = {
                    "username": username,
                    "password": h.PASSWORD,
                    "csrf": _field(page.text, "csrf"),
                    "return_to": _field(page.text, "return_to"),
                }
                posted = http.post("/login", data=form)
                if posted.status_code != 303:
                    raise RuntimeError(f"the /login form answered {posted.status_code}: {posted.text[:300]}")
                response = http.get(posted.headers["location"])
            if response.status_code != 302 or not response.headers["location"].startswith(REDIRECT):
                raise RuntimeError(f"authorize answered {response.status_code}: {response.headers.get('location')}")
            out.append(_exchange(http, "/oauth2/token", client, _code_of(response.headers["location"]), verifier))
    return out


# --- oauth-refresh: the refresh grant against the password login --------------------------------


def oauth_refresh(cfg: Config) -> list[Row]:
    with h.service(users=SESSIONS + 1) as svc:
        client = register_client(svc)
        names = svc.users[1:]
        oauth = [our_sessions(svc, client, name, 1)[0]["refresh_token"] for name in names]
        plain = [h.login(svc.base, name)["refresh_token"] for name in names]
        headers = {"Authorization": client.basic}

        def oauth_step(i: int) -> lg.Step:
            async def step(http: httpx.AsyncClient) -> int:
                form = {"grant_type": "refresh_token", "refresh_token": oauth[i]}
                response = await http.post("/oauth2/token", data=form, headers=headers)
                if response.status_code == 200:
                    oauth[i] = response.json()["refresh_token"]
                return response.status_code

            return step

        def plain_step(i: int) -> lg.Step:
            async def step(http: httpx.AsyncClient) -> int:
                response = await http.post("/api/v1/auth/refresh", json={"refresh_token": plain[i]})
                if response.status_code == 200:
                    plain[i] = response.json()["refresh_token"]
                return response.status_code

            return step

        def loop(make: Any, what: str) -> h.Run:
            load = asyncio.run(lg.closed_loop(svc.base, [make(i) for i in range(len(names))], cfg.seconds))
            if set(load.statuses) != {200}:
                raise RuntimeError(f"{what} answered {dict(load.statuses)}")
            return h.Run(load.rps, load.p50, load.pct(0.99), load.count)

        login_url, script = f"{svc.base}/api/v1/auth/login", h.login_script()
        runs = h.interleave(
            {
                "login": lambda: h.wrk(login_url, cfg.seconds, LOGIN_CONNECTIONS, script),
                "oauth2 refresh": lambda: h.measured(svc.pid, lambda: loop(oauth_step, "/oauth2/token")),
                "auth refresh": lambda: h.measured(svc.pid, lambda: loop(plain_step, "/auth/refresh")),
            },
            cfg.rounds,
        )
    r, plain_run, lgn = runs["oauth2 refresh"], runs["auth refresh"], runs["login"]
    return [
        row(
            "oauth refresh",
            f"POST /oauth2/token (refresh_token, client_secret_basic), {SESSIONS} sessions rotating",
            r.rps,
            "POST /login, same server",
            lgn.rps,
            "≥ 8",
            r.rps >= 8 * lgn.rps,
            detail=f"p50/p99 {r.p50:.1f}/{r.p99:.1f} ms; {r.cpu_us / 1000:.2f} ms CPU/refresh "
            f"(/auth/refresh {plain_run.cpu_us / 1000:.2f} ms)",
        ),
        row(
            "oauth refresh, split",
            "POST /oauth2/token (refresh_token), same load",
            r.rps,
            "POST /auth/refresh, same server, same load",
            plain_run.rps,
            "(context)",
            None,
            detail="the grant adds the client's authentication (one indexed read) and the form parsing",
        ),
    ]


# --- resource-server: local verification from the JWKS --------------------------------------------


def resource_server(cfg: Config) -> list[Row]:
    with h.service(users=2, JWT_ALGORITHM="ES256") as svc:
        client = register_client(svc)
        token = our_sessions(svc, client, svc.users[1], 1)[0]["access_token"]
        env = {
            **os.environ,
            "BENCH_JWKS_URL": f"{svc.base}/.well-known/jwks.json",
            "BENCH_ISSUER": svc.env.get("JWT_ISSUER", "auth-service"),
            "BENCH_AUDIENCE": svc.env.get("JWT_AUDIENCE", "auth-service-clients"),
        }
        with _uvicorn("bench.resource_server_app", env, "/open") as (base, pid):
            script = h.bearer_script(token)
            check = httpx.get(f"{base}/protected", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if check.status_code != 200 or check.json().get("sub") is None:
                raise RuntimeError(f"the resource server refused our token: {check.status_code} {check.text}")
            for path in ("/open", "/protected", "/protected-cached"):
                h.wrk(f"{base}{path}", cfg.warmup, cfg.connections, script)
            arms = {"no check": "/open", "ES256 check": "/protected", "cached check": "/protected-cached"}
            runs = h.interleave(
                {
                    name: (
                        lambda p=path: h.measured(
                            pid, lambda: h.wrk(f"{base}{p}", cfg.seconds, cfg.connections, script)
                        )
                    )
                    for name, path in arms.items()
                },
                cfg.rounds,
            )
    checked, bare, cached = runs["ES256 check"], runs["no check"], runs["cached check"]
    verify_us = _es256_verify_us()
    return [
        row(
            "resource server",
            f"bare Litestar route verifying our ES256 access token from the JWKS (joserfc), {cfg.connections} conns",
            checked.rps,
            "the same route without the check, same server",
            bare.rps,
            "≥ 0.8",
            checked.rps >= 0.8 * bare.rps,
            detail=f"p50/p99 {checked.p50:.1f}/{checked.p99:.1f} ms (unchecked {bare.p50:.1f}/{bare.p99:.1f}); "
            f"{checked.cpu_us:.0f} vs {bare.cpu_us:.0f} µs CPU/req; one P-256 signature check alone "
            f"(OpenSSL through cryptography, this process) {verify_us:.0f} µs",
        ),
        row(
            "resource server, cached",
            "the same check, claims kept per token until its exp (one verify per token)",
            cached.rps,
            "the same route without the check, same server",
            bare.rps,
            "(context)",
            None,
            detail=f"{cached.cpu_us:.0f} µs CPU/req",
        ),
    ]


def _es256_verify_us(seconds: float = 0.5) -> float:
    """µs per ECDSA P-256 / SHA-256 verification in this process: the floor of a check."""
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 400  # about an access token's signing input
    signature = private.sign(message, ec.ECDSA(hashes.SHA256()))
    public = private.public_key()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        n += 1
    return (time.perf_counter() - started) * 1e6 / n


@contextmanager
def _uvicorn(module: str, env: dict[str, str], probe: str) -> Iterator[tuple[str, int]]:
    """A bench app under uvicorn on the server core, bench.bare_app's settings; (base, pid)."""
    port = h.free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level", "warning"]
    base = f"http://127.0.0.1:{port}"
    server = h.start([*cmd, "--no-access-log"], env, f"{base}{probe}")
    try:
        yield base, server.pid
    finally:
        h.stop(server)


# --- well-known: the published documents against bare Litestar -------------------------------------


def well_known(cfg: Config) -> list[Row]:
    with h.service(JWT_ALGORITHM="ES256") as svc, tempfile.TemporaryDirectory() as tmp:
        paths = {"discovery": "/.well-known/openid-configuration", "jwks": "/.well-known/jwks.json"}
        files: dict[str, str] = {}
        for name, path in paths.items():
            response = httpx.get(f"{svc.base}{path}", timeout=10)
            response.raise_for_status()
            files[name] = str(Path(tmp) / f"{name}.json")
            Path(files[name]).write_bytes(response.content)
        env = {**os.environ, "BENCH_DISCOVERY_FILE": files["discovery"], "BENCH_JWKS_FILE": files["jwks"]}
        with _uvicorn("bench.bare_documents_app", env, "/discovery") as (bare, bare_pid):
            urls = {
                "bare discovery": (f"{bare}/discovery", bare_pid),
                "discovery": (f"{svc.base}{paths['discovery']}", svc.pid),
                "bare jwks": (f"{bare}/jwks", bare_pid),
                "jwks": (f"{svc.base}{paths['jwks']}", svc.pid),
            }
            for url, _ in urls.values():
                h.wrk(url, cfg.warmup, cfg.connections)
            runs = h.interleave(
                {
                    name: (lambda u=url, p=pid: h.measured(p, lambda: h.wrk(u, cfg.seconds, cfg.connections)))
                    for name, (url, pid) in urls.items()
                },
                cfg.rounds,
            )
        sizes = {name: Path(file).stat().st_size for name, file in files.items()}
    rows = []
    for name, what in (("discovery", "GET /.well-known/openid-configuration"), ("jwks", "GET /.well-known/jwks.json")):
        ours, bare_run = runs[name], runs[f"bare {name}"]
        rows.append(
            row(
                f"well-known {name}",
                f"{what} ({sizes[name]:,} bytes), {cfg.connections} conns",
                ours.rps,
                "bare Litestar endpoint serving the same bytes, same uvicorn settings",
                bare_run.rps,
                "≥ 0.8",
                ours.rps >= 0.8 * bare_run.rps,
                detail=f"p50/p99 {ours.p50:.1f}/{ours.p99:.1f} ms (bare {bare_run.p50:.1f}/{bare_run.p99:.1f}); "
                f"{ours.cpu_us:.0f} vs {bare_run.cpu_us:.0f} µs CPU/req",
            )
        )
    return rows
