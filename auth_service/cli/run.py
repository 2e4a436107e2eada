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

from auth_service.cli.common import default_public_url, fail, out, resolve_servers

__all__ = ["KEEPALIVE_SECONDS", "run", "run_api", "run_monitor", "run_up", "run_worker"]

KEEPALIVE_SECONDS = 75

_HOST = click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="HOST or 127.0.0.1")
_PORT = click.option(
    "--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")), show_default="PORT or 8000"
)


def run_api(host: str, port: int) -> None:
    import uvicorn

    default_public_url(host, port)
    settings = resolve_servers()
    from observability.logging import configure_logging

    base = f"{'https' if settings.tls_cert_file else 'http'}://{host}:{port}"
    # Through the logger, not print: with JSON logs every line of the process is one JSON object.
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    structlog.get_logger().info(
        "api.starting", url=base, docs=f"{base}/docs" if settings.docs_enabled else "off", env=settings.app_env
    )
    uvicorn.run(
        "auth_service.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,  # no "Server: uvicorn" banner
        proxy_headers=False,  # TRUSTED_PROXIES decides whom to believe, not uvicorn
        # Longer than any client's or proxy's idle timeout (httpx 5 s, nginx and AWS ALB 60 s): the
        # server must never be the side that closes an idle connection a client is reusing that
        # very moment (uvicorn's 5 s default raced httpx's 5 s: a request now and then got a reset).
        timeout_keep_alive=KEEPALIVE_SECONDS,
        # Checked with the settings: both or neither, readable files.
        ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None,
    )


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_worker() -> int:
    resolve_servers()
    out("worker starting (arq)")
    return _supervise([[sys.executable, "-m", "tasks"]])


def run_up(host: str, port: int) -> int:
    default_public_url(host, port)
    resolve_servers()
    return _supervise(
        [
            [sys.executable, "-m", "auth_service", "api", "--host", host, "--port", str(port)],
            [sys.executable, "-m", "tasks"],
        ]
    )


def run_monitor(host: str, port: int) -> int:
    """The service (API + worker) with VictoriaMetrics scraping it and vmalert on our rules."""
    import json
    import shutil

    import observability
    from auth_service.cli.embedded import DATA_DIR

    default_public_url(host, port)
    settings = resolve_servers()
    binaries = {name: shutil.which(name) for name in ("victoria-metrics", "vmalert")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        fail(f"{', '.join(missing)} not found; install Debian's package: apt-get install victoria-metrics")
    vm_port = int(os.environ.get("VM_PORT", "8428"))
    vmalert_port = int(os.environ.get("VMALERT_PORT", "8880"))
    folder = DATA_DIR / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    scrape = folder / "scrape.yml"  # JSON is YAML: no YAML writer needed
    scrape.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "15s"},
                "scrape_configs": [
                    {"job_name": "auth-api", "static_configs": [{"targets": [f"{host}:{port}"]}]},
                    {
                        "job_name": "auth-worker",
                        "static_configs": [
                            {"targets": [f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"]}
                        ],
                    },
                ],
            },
            indent=2,
        )
    )
    rules = Path(observability.__file__).parent / "alerts" / "rules.yml"
    vm_url = f"http://127.0.0.1:{vm_port}"
    out(f"VictoriaMetrics: {vm_url}/vmui  (data in {folder / 'victoria-metrics'}, scraping {scrape})")
    out(f"vmalert: http://127.0.0.1:{vmalert_port}/vmalert/alerts  (rules {rules})")
    return _supervise(
        [
            [sys.executable, "-m", "auth_service", "api", "--host", host, "--port", str(port)],
            [sys.executable, "-m", "tasks"],
            [
                str(binaries["victoria-metrics"]),
                f"-storageDataPath={folder / 'victoria-metrics'}",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-promscrape.config={scrape}",
                "-loggerLevel=WARN",
            ],
            [
                str(binaries["vmalert"]),
                f"-rule={rules}",
                f"-datasource.url={vm_url}",
                f"-remoteWrite.url={vm_url}",
                f"-notifier.url={os.environ.get('ALERTMANAGER_URL', 'http://127.0.0.1:9093')}",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-loggerLevel=WARN",
            ],
        ]
    )


def _supervise(commands: list[list[str]]) -> int:
    """Run the children; when one exits or we are interrupted, stop them all."""
    children = [subprocess.Popen(cmd, env=_child_env()) for cmd in commands]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[0].wait(timeout=0.5)
    except KeyboardInterrupt:
        pass
    stop()
    codes = []
    for child in children:
        try:
            codes.append(child.wait(timeout=15))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    out("stopped")
    return max((abs(code) for code in codes if code not in (0, -signal.SIGINT, 130)), default=0)


@click.group(help="Processes: the API, the worker, both, or both with monitoring.")
def run() -> None:
    """Process supervisor."""


@run.command("api", help="Run the HTTP API.")
@_HOST
@_PORT
def run_api_command(host: str, port: int) -> None:
    run_api(host, port)


@run.command("worker", help="Run the background worker.")
def run_worker_command() -> int:
    return run_worker()


@run.command("up", help="Run the API and the worker together.")
@_HOST
@_PORT
def run_up_command(host: str, port: int) -> int:
    return run_up(host, port)


@run.command("monitor", help="Run API, worker, VictoriaMetrics and vmalert together.")
@_HOST
@_PORT
def run_monitor_command(host: str, port: int) -> int:
    return run_monitor(host, port)
