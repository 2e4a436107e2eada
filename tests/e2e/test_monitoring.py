"""Dashboards and alerts proven against a real VictoriaMetrics scraping the real service.

VictoriaMetrics (Debian package) scrapes two API processes and the worker every second;
vmalert evaluates the real rule file (group interval shortened to 1 s). The fresh service
first reads a value (0 where nothing happened) on every panel, then traffic stays under
every threshold, then crosses the error-rate and auth-failure ones.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from auth_service.settings import Settings
from tasks.worker import FUNCTIONS
from tests.conftest import PYTHON, ROOT, TEST_SECRET, free_port, make_settings
from tests.e2e.conftest import api_server, child_env, stop_process
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.proxy import TcpProxy

DASHBOARDS = ROOT / "observability" / "grafana" / "dashboards"
RULES = ROOT / "observability" / "alerts" / "rules.yml"


def _binary(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    assert Path(path).exists(), f"{name} is required (apt-get install victoria-metrics); .ci/run installs it"
    return path


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker(settings: Settings, tmp_path: Path, own_redis: Any) -> Iterator[str]:
    port = free_port()
    env = child_env(
        DATABASE_URL=settings.database.owner_url,
        REDIS_URL=own_redis.url,
        JWT_SECRET_KEY=TEST_SECRET,
        WORKER_METRICS_PORT=str(port),
    )
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([PYTHON, "-m", "tasks"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    target = f"127.0.0.1:{port}"
    _wait("worker metrics", lambda: httpx.get(f"http://{target}/metrics", timeout=1).status_code == 200, 30)
    yield target
    stop_process(proc)
    log.close()


def _start(cmd: list[str], tmp_path: Path, name: str) -> subprocess.Popen[Any]:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(cmd, stdout=log, stderr=log)


def _panel_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):  # a row heading has none
                found.append((dashboard["uid"], panel["title"], target["expr"]))
    return found


def _describe(panels: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"  dashboard {uid}, panel {title!r}: {expr}" for uid, title, expr in panels)


def _active_alerts(vmalert: str) -> set[str]:
    alerts = httpx.get(f"{vmalert}/api/v1/alerts", timeout=5).json()["data"]["alerts"] or []
    return {a["name"] for a in alerts if a["state"] in ("pending", "firing")}


async def test_every_panel_has_data_and_alerts_fire_only_past_thresholds(
    settings: Settings, tmp_path: Path, own_redis: Any, worker: str
) -> None:
    await create_user(settings, username="alice")
    local = make_settings(settings.database.owner_url, own_redis.url)
    env = {"RATE_LIMIT_LOGIN": "1000/minute", "RATE_LIMIT_API": "3/minute"}
    # The second instance reaches PostgreSQL through a proxy the test closes later: `api` refuses
    # to start on an unreachable database, so the database goes away after the start.
    database = make_url(settings.database.owner_url)
    proxy = TcpProxy(database.port or 5432, database.host or "127.0.0.1")
    broken_settings = make_settings(database.set(port=proxy.port).render_as_string(hide_password=False), own_redis.url)
    broken_port = free_port()
    with api_server(local, tmp_path, **env) as api, contextlib.ExitStack() as stack:
        vm_port, vmalert_port = free_port(), free_port()
        scrape = tmp_path / "scrape.yml"
        targets = [api.removeprefix("http://"), f"127.0.0.1:{broken_port}"]
        scrape.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "auth-api", "static_configs": [{"targets": targets}]},
                        {"job_name": "auth-worker", "static_configs": [{"targets": [worker]}]},
                    ],
                }
            )
        )
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        fast_rules = tmp_path / "rules.yml"
        fast_rules.write_text(yaml.safe_dump(rules))
        vm = _start(
            [
                _binary("victoria-metrics"),
                f"-storageDataPath={tmp_path / 'vm'}",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-promscrape.config={scrape}",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ],
            tmp_path,
            "victoria-metrics",
        )
        vmalert = _start(
            [
                _binary("vmalert"),
                f"-rule={fast_rules}",
                f"-datasource.url=http://127.0.0.1:{vm_port}",
                f"-notifier.url=http://127.0.0.1:{free_port()}",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-evaluationInterval=1s",
            ],
            tmp_path,
            "vmalert",
        )
        vm_url, vmalert_url = f"http://127.0.0.1:{vm_port}", f"http://127.0.0.1:{vmalert_port}"
        try:
            _wait("victoria-metrics", lambda: httpx.get(f"{vm_url}/health", timeout=1).status_code == 200, 30)
            _wait("vmalert", lambda: httpx.get(f"{vmalert_url}/api/v1/alerts", timeout=1).status_code == 200, 30)

            def query(expr: str) -> list[Any]:
                body = httpx.get(f"{vm_url}/api/v1/query", params={"query": expr}, timeout=5).json()
                assert body["status"] == "success", (expr, body)
                return list(body["data"]["result"])

            # Phase 0: the fresh, healthy service, before any traffic but the scrapes and any fault:
            # every panel query of every dashboard has a series (0 where nothing happened), and
            # every Errors panel reads exactly 0.
            _wait("API and worker scraped", lambda: len(query('up{job=~"auth-api|auth-worker"} == 1')) == 2, 30)
            deadline = time.monotonic() + 30
            while (empty := [panel for panel in _panel_queries() if not query(panel[2])]) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.5)
            assert not empty, f"panels with no data on a fresh, healthy service:\n{_describe(empty)}"
            # The worker's counters, not a cron run, feed the jobs panel: every task reads 0.
            tasks = {series["metric"]["task"] for series in query("sum by (task) (jobs_runs_total)")}
            assert tasks == {job.__name__ for job in FUNCTIONS.values()}, tasks
            nonzero = [
                (uid, title, expr)
                for uid, title, expr in _panel_queries()
                if uid == "auth-errors" and any(float(series["value"][1]) != 0 for series in query(expr))
            ]
            assert not nonzero, f"error panels above 0 on a healthy service:\n{_describe(nonzero)}"

            # Phase 1: healthy traffic, spread over a few scrapes.
            from arq import create_pool
            from arq.connections import RedisSettings

            pool = await create_pool(RedisSettings.from_dsn(own_redis.url))
            await pool.enqueue_job("cleanup_expired_tokens")
            await pool.aclose()
            with httpx.Client(base_url=api, timeout=10) as http:

                def login(username: str = "alice", password: str = DEFAULT_PASSWORD) -> Any:
                    return http.post("/api/v1/auth/login", json={"username": username, "password": password})

                for round_ in range(4):
                    for _ in range(10):
                        tokens = login().json()
                    if round_ in (1, 2):
                        login("ghost", "nope")  # 2 failures in 42 attempts: under 10 %
                    http.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))
                    refresh = {"refresh_token": tokens["refresh_token"]}
                    refreshed = http.post("/api/v1/auth/refresh", json=refresh).json()
                    http.get("/api/v1/health")
                    http.get("/docs/openapi.json")
                    time.sleep(1.5)
                for _ in range(4):  # over RATE_LIMIT_API: 429s
                    http.get("/api/v1/auth/verify", headers=bearer(refreshed["access_token"]))
                http.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
                failures = 'sum(rate(auth_login_attempts_total{outcome="failure"}[5m]))'
                _wait("phase-1 data", lambda: bool(query(failures)), 30)
                time.sleep(4)  # several evaluations under the thresholds
                quiet = _active_alerts(vmalert_url)
                assert not quiet & {"APIErrorRateHigh", "AuthFailureRateHigh", "DatabaseConnectionFailures"}, quiet

                # Phase 2: cross the auth-failure threshold, then inject server errors.
                for burst in range(2):
                    for i in range(15):
                        login(f"nobody{burst}{i}", "guess")
                    time.sleep(1.5)
                # A second instance whose database becomes unreachable: connection failures.
                broken = stack.enter_context(api_server(broken_settings, tmp_path, port=broken_port))
                proxy.close()
                _wait(
                    "the second instance's database gone",
                    lambda: httpx.get(f"{broken}/api/v1/health").status_code == 503,
                    30,
                )
                own_redis.stop()
                for _ in range(2):
                    for _ in range(10):
                        login()
                    http.get("/api/v1/auth/verify", headers=bearer(refreshed["access_token"]))
                    time.sleep(1.5)

            _wait(
                "alerts past their thresholds",
                lambda: (
                    {"APIErrorRateHigh", "AuthFailureRateHigh", "DatabaseConnectionFailures"}
                    <= _active_alerts(vmalert_url)
                ),
                30,
            )

            # Every panel query of every dashboard returns data over the test's time range
            # (a range query, as Grafana runs them: gauges read from Redis stop while it is down).
            def query_range(expr: str) -> list[Any]:
                now = time.time()
                params = {"query": expr, "start": now - 180, "end": now, "step": "1s"}
                body = httpx.get(f"{vm_url}/api/v1/query_range", params=params, timeout=10).json()
                assert body["status"] == "success", (expr, body)
                return list(body["data"]["result"])

            empty = [(uid, title, expr) for uid, title, expr in _panel_queries() if not query_range(expr)]
            assert not empty, f"panels with no data over the test:\n{_describe(empty)}"
            # Every alert expression evaluates (no query errors), with or without data.
            for group in rules["groups"]:
                for rule in group["rules"]:
                    query(rule["expr"])
        finally:
            stop_process(vmalert)
            stop_process(vm)
