"""`python -m tasks`: run the arq worker with our WorkerSettings."""

from __future__ import annotations

from arq.worker import run_worker

from auth_service.config import get_settings
from observability.logging import configure_logging
from tasks.worker import WorkerSettings, redis_settings


def main() -> None:
    settings = get_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    run_worker(WorkerSettings, redis_settings=redis_settings())  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
