"""`run`: the processes (the API, the worker, both, both with monitoring) and their supervisor."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import structlog

from auth_service.cli.common import fail, out, resolve_servers
from auth_service.cli.preflight import ensure_port_free, env_port
from auth_service.settings import Settings

__all__ = ["KEEPALIVE_SECONDS", "run", "run_api", "run_monitor", "run_up", "run_worker"]

KEEPALIVE_SECONDS = 75

_HOST = click.option("--host", default=None, help="where to listen  [default: HOST or 127.0.0.1]")
_PORT = click.option("--port", default=None, help="the port  [default: PORT or 8000]")


def _listen_on(host: str | None, port: str | None) -> None:
    """--host/--port win over HOST/PORT; the settings check both (one line when malformed) and
    derive PUBLIC_BASE_URL from them when it is unset, for every process alike."""
    if host is not None:
        os.environ["HOST"] = host
    if port is not None:
        os.environ["PORT"] = port


def run_api(host: str | None = None, port: str | None = None) -> None:
    import uvicorn

    _listen_on(host, port)
    settings = resolve_servers(as_service=True)
    ensure_port_free("PORT", settings.app.host, settings.app.port)
    from observability.logging import configure_logging

    base = f"{'https' if settings.app.tls_cert_file else 'http'}://{settings.app.host}:{settings.app.port}"
    # Through the logger, not print: with JSON logs every line of the process is one JSON object.
    configure_logging(level=settings.telemetry.log_level, fmt=settings.telemetry.log_format)
    structlog.get_logger().info(
        "api.starting", url=base, docs=f"{base}/docs" if settings.pages.docs_enabled else "off", env=settings.app.env
    )
    uvicorn.run(
        "auth_service.app:create_app",
        factory=True,
        host=settings.app.host,
        port=settings.app.port,
        log_config=None,
        access_log=False,
        server_header=False,  # no "Server: uvicorn" banner
        proxy_headers=False,  # TRUSTED_PROXIES decides whom to believe, not uvicorn
        # Longer than any client's or proxy's idle timeout (httpx 5 s, nginx and AWS ALB 60 s): the
        # server must never be the side that closes an idle connection a client is reusing that
        # very moment (uvicorn's 5 s default raced httpx's 5 s: a request now and then got a reset).
        timeout_keep_alive=KEEPALIVE_SECONDS,
        # Checked with the settings: both or neither, readable files.
        ssl_certfile=settings.app.tls_cert_file or None,
        ssl_keyfile=settings.app.tls_key_file or None,
    )


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _api_and_worker(settings: Settings) -> dict[str, list[str]]:
    ensure_port_free("PORT", settings.app.host, settings.app.port)
    ensure_port_free(
        "WORKER_METRICS_PORT", settings.telemetry.worker_metrics_host, settings.telemetry.worker_metrics_port
    )
    return {"api": [sys.executable, "-m", "auth_service", "api"], "worker": [sys.executable, "-m", "tasks"]}


def run_worker() -> int:
    settings = resolve_servers(as_service=True)
    ensure_port_free(
        "WORKER_METRICS_PORT", settings.telemetry.worker_metrics_host, settings.telemetry.worker_metrics_port
    )
    banner = f"worker starting (arq); links in e-mails point at {settings.app.base_url}"
    return _supervise({"worker": [sys.executable, "-m", "tasks"]}, banner)


def run_up(host: str | None = None, port: str | None = None) -> int:
    _listen_on(host, port)
    settings = resolve_servers(as_service=True)
    return _supervise(_api_and_worker(settings))


def run_monitor(host: str | None = None, port: str | None = None) -> int:
    """The service (API + worker) with VictoriaMetrics scraping it and vmalert on our rules."""
    import json
    import shutil

    import observability
    from auth_service.cli.embedded import DATA_DIR

    _listen_on(host, port)
    settings = resolve_servers(as_service=True)
    binaries = {name: shutil.which(name) for name in ("victoria-metrics", "vmalert")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        fail(f"{', '.join(missing)} not found; install Debian's package: apt-get install victoria-metrics")
    vm_port = env_port("VM_PORT", 8428)
    vmalert_port = env_port("VMALERT_PORT", 8880)
    children = _api_and_worker(settings)
    ensure_port_free("VM_PORT", "127.0.0.1", vm_port)
    ensure_port_free("VMALERT_PORT", "127.0.0.1", vmalert_port)
    folder = DATA_DIR / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    scrape = folder / "scrape.yml"  # JSON is YAML: no YAML writer needed
    scrape.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "15s"},
                "scrape_configs": [
                    {
                        "job_name": "auth-api",
                        "static_configs": [{"targets": [f"{settings.app.host}:{settings.app.port}"]}],
                    },
                    {
                        "job_name": "auth-worker",
                        "static_configs": [
                            {
                                "targets": [
                                    f"{settings.telemetry.worker_metrics_host}:{settings.telemetry.worker_metrics_port}"
                                ]
                            }
                        ],
                    },
                ],
            },
            indent=2,
        )
    )
    rules = Path(observability.__file__).parent / "alerts" / "rules.yml"
    vm_url = f"http://127.0.0.1:{vm_port}"
    example = "sum(rate(auth_login_attempts_total[5m]))by(outcome)"
    # Debian's victoria-metrics ships no web UI (vmui): print what answers.
    out(f"VictoriaMetrics: {vm_url}  (data in {folder / 'victoria-metrics'}, scraping {scrape})")
    out(f"  scrape targets: {vm_url}/targets")
    out(f"  query API:      {vm_url}/api/v1/query?query=up  (Grafana's Prometheus data source: {vm_url})")
    out(f"  example:        curl -gs '{vm_url}/api/v1/query?query={example}'")
    out(f"vmalert: http://127.0.0.1:{vmalert_port}/api/v1/alerts  (rules {rules})")
    return _supervise(
        {
            **children,
            "victoria-metrics": [
                str(binaries["victoria-metrics"]),
                f"-storageDataPath={folder / 'victoria-metrics'}",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-promscrape.config={scrape}",
                "-loggerLevel=WARN",
            ],
            "vmalert": [
                str(binaries["vmalert"]),
                f"-rule={rules}",
                f"-datasource.url={vm_url}",
                f"-remoteWrite.url={vm_url}",
                f"-notifier.url={os.environ.get('ALERTMANAGER_URL', 'http://127.0.0.1:9093')}",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-loggerLevel=WARN",
            ],
        }
    )


def _own_group() -> None:
    """In the child, before exec: a process group of its own (the terminal's Ctrl-C reaches only
    the supervisor, which passes exactly one SIGINT on), and death with the supervisor (SIGTERM
    when it dies, even by SIGKILL: no orphans holding the ports)."""
    import ctypes

    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _supervise(commands: dict[str, list[str]], banner: str = "") -> int:
    """Run the children; when one exits or we are asked to stop, stop them all, one signal each.

    A Ctrl-C used to reach every child twice (the terminal's, then ours): uvicorn and arq take a
    second SIGINT as "stop now" and died mid-shutdown, printing pages of tracebacks.
    """
    asked = False

    def ask_to_stop(*_: object) -> None:
        nonlocal asked
        asked = True

    # Before the first child starts: a Ctrl-C that lands while they start is a stop request like
    # any other, never an exception that leaves a child running behind a dead supervisor.
    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)
    if banner:  # after the handlers: a Ctrl-C by someone who read it is a stop request too
        out(banner)
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        if asked:
            break
        children[name] = subprocess.Popen(cmd, env=_child_env(), preexec_fn=_own_group)
    for name in commands.keys() - children.keys():
        out(f"stopped {name}")  # asked to stop before it started: stopped all the same, and said so
    first_exit = ""
    while not asked and not first_exit:
        for name, child in children.items():
            if child.poll() is not None:
                first_exit = name
                break
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                next(iter(children.values())).wait(timeout=0.2)
    # Further Ctrl-C or SIGTERM while the children shut down: ignored, the deadline below holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    codes = []
    for name, child in children.items():
        try:
            code = child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
            out(f"stopped {name} (killed: it did not stop within 15 s)")
        else:
            if name == first_exit and code not in (0, -signal.SIGINT, 130):
                out(f"{name} exited with {code}; stopped the others")
            else:
                out(f"stopped {name}")
        codes.append(code)
    return max((abs(code) for code in codes if code not in (0, -signal.SIGINT, 130)), default=0)


@click.group(help="Processes: the API, the worker, both, or both with monitoring.")
def run() -> None:
    """Process supervisor."""


@run.command("api", help="Run the HTTP API.")
@_HOST
@_PORT
def run_api_command(host: str | None, port: str | None) -> None:
    run_api(host, port)


@run.command("worker", help="Run the background worker.")
def run_worker_command() -> int:
    return run_worker()


@run.command("up", help="Run the API and the worker together.")
@_HOST
@_PORT
def run_up_command(host: str | None, port: str | None) -> int:
    return run_up(host, port)


@run.command("monitor", help="Run API, worker, VictoriaMetrics and vmalert together.")
@_HOST
@_PORT
def run_monitor_command(host: str | None, port: str | None) -> int:
    return run_monitor(host, port)
