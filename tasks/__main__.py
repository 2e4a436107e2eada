"""`python -m tasks`: run the arq worker with our WorkerSettings."""

from __future__ import annotations

from importlib.metadata import version

import structlog
from arq.worker import run_worker
from prometheus_client import start_http_server

from auth_service.cli.preflight import ensure_port_free
from auth_service.settings import get_settings
from observability.logging import configure_logging
from observability.setup import init_telemetry
from observability.tracing import instrument_redis
from tasks.worker import WorkerSettings, redis_settings

log = structlog.get_logger()


def main() -> None:
    settings = get_settings()
    configure_logging(level=settings.telemetry.log_level, fmt=settings.telemetry.log_format)
    init_telemetry(service_name="auth-service-worker", version=version("auth-service"), environment=settings.app.env)
    instrument_redis()
    # The worker's own /metrics (jobs run, durations, process CPU and memory) for scrapers; a taken
    # port stops the worker with one line naming the setting.
    ensure_port_free(
        "WORKER_METRICS_PORT", settings.telemetry.worker_metrics_host, settings.telemetry.worker_metrics_port
    )
    start_http_server(settings.telemetry.worker_metrics_port, addr=settings.telemetry.worker_metrics_host)
    log.info(
        "worker.metrics_listening",
        url=f"http://{settings.telemetry.worker_metrics_host}:{settings.telemetry.worker_metrics_port}/metrics",
    )
    run_worker(
        WorkerSettings,  # type: ignore[arg-type]
        redis_settings=redis_settings(),
        job_timeout=settings.jobs.timeout,
    )


if __name__ == "__main__":
    main()
