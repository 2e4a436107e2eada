"""The benchmark's baseline scripts run against today's settings declaration (a rename of the
settings once broke `just bench` without failing any test), every scenario is described, and the
OpenID Connect rows' load scripts do what they claim (no timings here)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest

from auth_service.settings import PasswordSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_argon2_baseline_runs_at_the_services_own_parameters() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.argon2_baseline", "--seconds", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    defaults = PasswordSettings()
    assert (line["memory_kib"], line["time_cost"], line["parallelism"]) == (
        defaults.memory_kib,
        defaults.time_cost,
        defaults.parallelism,
    )
    assert line["rps"] > 0


def test_every_scenario_is_described_in_the_bench_readme() -> None:
    from bench.run import SCENARIOS

    readme = (ROOT / "bench" / "README.md").read_text()
    missing = [name for name in SCENARIOS if f"| `{name}` |" not in readme]
    assert not missing, f"bench/README.md has no row for {missing}"


def test_the_oidc_provider_comparison_names_one_version() -> None:
    """The comparison OP is pinned exactly, and its lock agrees (`npm ci` installs the lock)."""
    package = json.loads((ROOT / "bench" / "oidc_provider" / "package.json").read_text())
    lock = json.loads((ROOT / "bench" / "oidc_provider" / "package-lock.json").read_text())
    version = package["dependencies"]["oidc-provider"]
    assert version[0].isdigit(), "an exact version, not a range"
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert lock["packages"]["node_modules/oidc-provider"]["version"] == version


class _Rotating(BaseHTTPRequestHandler):
    """A refresh endpoint in miniature: each live token is spent once, for a new one."""

    protocol_version = "HTTP/1.1"
    live: ClassVar[set[str]] = set()
    reused: ClassVar[list[str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        token = parse_qs(body).get("refresh_token", [""])[0]
        with self.lock:
            spent = token in self.live
            self.live.discard(token)
            successor = secrets.token_urlsafe(16)
            if spent:
                self.live.add(successor)
            else:
                self.reused.append(token)
        answer = json.dumps({"refresh_token": successor} if spent else {"error": "invalid_grant"}).encode()
        self.send_response(200 if spent else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_wrk_refresh_script_spends_every_token_once() -> None:
    """bench/oidc.py's rotation chains: every request spends a live token, every answer's
    successor goes back to the pool, no token is sent twice and none is missing (wrk's first,
    unsent `request` call takes the spare)."""
    from bench import oidc

    tokens = [secrets.token_urlsafe(16) for _ in range(oidc.OP_CONNECTIONS + 1)]
    _Rotating.live = set(tokens)
    _Rotating.reused = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rotating)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = oidc.Client("id", "secret")
        url = f"http://127.0.0.1:{server.server_address[1]}/token"
        run = oidc._checked_wrk(url, 1, oidc.refresh_script("/token", client, tokens), "missing")
    finally:
        server.shutdown()
        server.server_close()
    assert run.requests > 0 and run.errors == 0
    assert _Rotating.reused == []
