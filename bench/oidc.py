"""The OpenID Connect provider's rows: every figure against a baseline measured in the same run.

- `oauth-refresh`: POST /oauth2/token with grant_type=refresh_token (a confidential client,
  client_secret_basic), 16 sessions each rotating its own token, against the password login on
  the same server (target ≥ 8, as /auth/refresh has); /auth/refresh beside it, for context.
- `resource-server`: a bare Litestar resource server that verifies our ES256 access token
  locally (joserfc, keys fetched once from /.well-known/jwks.json) against the same server's
  route without the check (target ≥ 0.8).
- `well-known`: /.well-known/openid-configuration and /.well-known/jwks.json against a bare
  Litestar app serving the same bytes, same uvicorn settings (target ≥ 0.8 each).
- `oidc-provider`: our /oauth2/token refresh and /oauth2/introspect against panva's
  oidc-provider (bench/oidc_provider/server.mjs), set up alike, on the same core, by the same wrk.

The sessions are made through the code flow as a browser would (authorize → /login form →
code → token), before the clock; the users are the bench's (bench1, …), the client is
registered through the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from bench import harness as h
from bench import load as lg
from bench.scenarios import LOGIN_CONNECTIONS, Config, Row, row

__all__ = ["oauth_refresh", "oidc_provider", "resource_server", "well_known"]

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
        with (
            _uvicorn("bench.bare_documents_app", env, "/discovery") as (bare, bare_pid),
            h.bare("bench.stack_app") as (stack_url, stack_pid),
        ):
            urls = {
                "bare discovery": (f"{bare}/discovery", bare_pid),
                "bare + our stack": (stack_url, stack_pid),
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
    stack, bare_run = runs["bare + our stack"], runs["bare discovery"]
    rows.append(
        row(
            "well-known, split",
            "bench/stack_app.py: a small JSON endpoint inside our per-request stack, no document",
            stack.rps,
            "bare Litestar endpoint serving the discovery bytes",
            bare_run.rps,
            "(context)",
            None,
            detail=f"request id, server span (1 % sampled), HTTP histogram, header hooks, envelope; "
            f"{stack.cpu_us:.0f} µs CPU/req: the ceiling of any endpoint behind that stack",
        )
    )
    return rows


# --- oidc-provider: the certified Node OP, set up alike ---------------------------------------------

NPM_CACHE = Path(os.environ.get("BENCH_NPM_DIR", Path.home() / ".cache" / "auth-service-bench" / "npm"))
_PACKAGE = h.ROOT / "bench" / "oidc_provider"


def install_oidc_provider() -> Path:
    """`npm ci` of bench/oidc_provider's lock into NPM_CACHE (once; again when the lock changes);
    the node_modules directory."""
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        raise RuntimeError("the oidc-provider comparison needs node (≥ 20.19) and npm")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    lock = (_PACKAGE / "package-lock.json").read_bytes()
    installed = NPM_CACHE / "node_modules" / ".bench-lock"
    if not installed.exists() or installed.read_bytes() != lock:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(_PACKAGE / name, NPM_CACHE / name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=NPM_CACHE, check=True)
        installed.write_bytes(lock)
    return NPM_CACHE / "node_modules"


@contextmanager
def oidc_provider_server(client: Client) -> Iterator[tuple[str, int]]:
    modules = install_oidc_provider()
    port = h.free_port()
    env = {
        **os.environ,
        "OIDC_PROVIDER_MODULES": str(modules),
        "PORT": str(port),
        "BENCH_CLIENT_ID": client.client_id,
        "BENCH_CLIENT_SECRET": client.secret,
        "BENCH_REDIRECT_URI": REDIRECT,
        "DEBUG": "",
    }
    base = f"http://127.0.0.1:{port}"
    server = h.start(
        [shutil.which("node") or "node", str(_PACKAGE / "server.mjs")], env, f"{base}/.well-known/openid-configuration"
    )
    try:
        yield base, server.pid
    finally:
        h.stop(server)


def their_sessions(base: str, client: Client, account: str, count: int) -> list[dict[str, str]]:
    """`count` sessions of one account through oidc-provider's code flow and its development
    interactions: the login page once (any account id, no password check), then its consent page
    for each authorization (offline_access needs prompt=consent there), then the code exchange."""
    out: list[dict[str, str]] = []
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as http:
        for _ in range(count):
            verifier, challenge = _pkce()
            location = f"/auth?{_authorize_query(client.client_id, challenge, prompt='consent')}"
            for _hop in range(12):
                if location.startswith(REDIRECT):
                    break
                response = http.get(location)
                if response.status_code in (302, 303):
                    location = urljoin(base, response.headers["location"])
                    location = location.removeprefix(base)
                    continue
                if response.status_code != 200 or "/interaction/" not in str(response.url):
                    raise RuntimeError(f"oidc-provider answered {response.status_code}: {response.text[:300]}")
                page = response.text
                prompt = "login" if 'value="login"' in page else "consent"
                form = (
                    {"prompt": prompt, "login": account, "password": "any"} if prompt == "login" else {"prompt": prompt}
                )
                posted = http.post(urlsplit(str(response.url)).path, data=form)
                if posted.status_code not in (302, 303):
                    raise RuntimeError(
                        f"oidc-provider's {prompt} page answered {posted.status_code}: {posted.text[:300]}"
                    )
                location = urljoin(base, posted.headers["location"]).removeprefix(base)
            else:
                raise RuntimeError("oidc-provider's authorization did not end at the redirect URI")
            out.append(_exchange(http, "/token", client, _code_of(location), verifier))
    return out


_LUA_ENCODE = """
local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end
"""


def _lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def refresh_script(path: str, client: Client, tokens: list[str]) -> str:
    """wrk: every request spends a refresh token from the pool, every answer puts its successor
    back: rotation chains over a pool of len(tokens). wrk calls `request` once in each thread
    before its connections open (that request is never sent), so the pool needs one token more
    than the connections."""
    return (
        _LUA_ENCODE
        + f"""
pool = {_lua_list(tokens)}
missing = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "{client.basic}"
request = function()
  local t = table.remove(pool)
  if t == nil then missing = missing + 1; t = "none" end
  return wrk.format(nil, "{path}", nil, "grant_type=refresh_token&refresh_token=" .. enc(t))
end
response = function(status, headers, body)
  local t = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if t then table.insert(pool, t) end
end
"""
    )


def introspect_script(path: str, client: Client, tokens: list[str]) -> str:
    """wrk: introspection of the access tokens in turn; answers that are not active are counted."""
    return (
        _LUA_ENCODE
        + f"""
local tokens = {_lua_list(tokens)}
local i = 0
inactive = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "{client.basic}"
request = function()
  i = i % #tokens + 1
  return wrk.format(nil, "{path}", nil, "token=" .. enc(tokens[i]))
end
response = function(status, headers, body)
  if not body:find('"active"%s*:%s*true') then inactive = inactive + 1 end
end
"""
    )


OP_CONNECTIONS = 16  # as many as sessions per round: each connection carries one rotation chain


def _checked_wrk(url: str, seconds: float, script: str, counter: str) -> h.Run:
    """wrk with one of the scripts above; a request without a token or an answer without the
    expected body (`counter` > 0) fails the scenario, as a non-2xx answer does."""
    out: list[str] = []
    run = h.wrk(url, seconds, OP_CONNECTIONS, script + _done(counter), output=out)
    found = re.findall(rf"^BENCH {counter}=(\d+)$", out[0], re.MULTILINE)
    if not found or any(int(n) for n in found):
        raise RuntimeError(f"wrk against {url}: {counter} = {found}")
    return run


def _done(counter: str) -> str:
    return f"""
threads = {{}}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do io.write("BENCH {counter}=" .. tostring(t:get("{counter}")) .. "\\n") end
end
"""


def oidc_provider(cfg: Config) -> list[Row]:
    """Ours and oidc-provider side by side: each measured on the server core, the same wrk, the
    same scripts, interleaved. Every run gets sessions made through the code flow just before it
    (not on the clock): a refresh run ends its chains (a wrk stopped mid-request loses the
    successors it never read), and oidc-provider's stock memory adapter is an LRU of 1,000
    entries, so its tokens made before the previous run are gone by the next."""
    # 17 users: a session of each per run, 16 chains and the token wrk's first `request` takes.
    with h.service(users=OP_CONNECTIONS + 2, JWT_ALGORITHM="ES256") as svc:
        ours_client = register_client(svc)
        theirs_client = Client("bench-client", secrets.token_urlsafe(32))
        with oidc_provider_server(theirs_client) as (op_base, op_pid):
            sides = {
                "ours": (svc.base, svc.pid, ours_client, "/oauth2/token", "/oauth2/introspect"),
                "theirs": (op_base, op_pid, theirs_client, "/token", "/token/introspection"),
            }

            def sessions(side: str) -> list[dict[str, str]]:
                """A fresh session of each of 17 users."""
                client = sides[side][2]
                if side == "ours":
                    return [our_sessions(svc, client, name, 1)[0] for name in svc.users[1:]]
                return [their_sessions(op_base, client, name, 1)[0] for name in svc.users[1:]]

            def refreshes(side: str, seconds: float) -> h.Run:
                base, pid, client, token_path, _ = sides[side]
                script = refresh_script(token_path, client, [s["refresh_token"] for s in sessions(side)])
                return h.measured(pid, lambda: _checked_wrk(f"{base}{token_path}", seconds, script, "missing"))

            def introspections(side: str) -> h.Run:
                base, pid, client, _, path = sides[side]
                script = introspect_script(path, client, [s["access_token"] for s in sessions(side)])
                return h.measured(pid, lambda: _checked_wrk(f"{base}{path}", cfg.seconds, script, "inactive"))

            for side in sides:  # warm-up
                refreshes(side, cfg.warmup)
            runs = h.interleave(
                {
                    "ours refresh": lambda: refreshes("ours", cfg.seconds),
                    "theirs refresh": lambda: refreshes("theirs", cfg.seconds),
                    "ours introspect": lambda: introspections("ours"),
                    "theirs introspect": lambda: introspections("theirs"),
                },
                cfg.rounds,
            )
    rows = []
    for name, what, theirs_path in (
        ("refresh", "POST /oauth2/token (refresh_token, rotated)", "POST /token"),
        ("introspect", "POST /oauth2/introspect (an access token)", "POST /token/introspection"),
    ):
        o, t = runs[f"ours {name}"], runs[f"theirs {name}"]
        rows.append(
            row(
                f"vs oidc-provider: {name}",
                f"ours: {what}, {OP_CONNECTIONS} conns (wrk)",
                o.rps,
                f"oidc-provider 9 (Node {_node_version()}, memory adapter): {theirs_path}",
                t.rps,
                "(context)",
                None,
                detail=f"p50/p99 {o.p50:.1f}/{o.p99:.1f} ms vs {t.p50:.1f}/{t.p99:.1f} ms; "
                f"{o.cpu_us:.0f} vs {t.cpu_us:.0f} µs server CPU/req",
            )
        )
    return rows


def _node_version() -> str:
    node = shutil.which("node") or "node"
    return subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
