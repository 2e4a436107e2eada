"""What every command shares: output, refusal, and the settings with the servers they name."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from auth_service.cli.embedded import ensure_postgres, ensure_redis
from auth_service.cli.output import err, fail, out
from auth_service.cli.preflight import check_servers
from auth_service.settings import Settings, SettingsError, get_settings

__all__ = ["ENV_FILE", "configured", "err", "fail", "out", "resolve_servers"]

ENV_FILE = Path(".env")


def configured(name: str) -> bool:
    if os.environ.get(name):
        return True
    return ENV_FILE.is_file() and bool(dotenv_values(ENV_FILE).get(name))


def resolve_servers(*, reach: bool = True, as_service: bool = False) -> Settings:
    """Settings, starting the embedded PostgreSQL / Redis for whichever URL is unset; with `reach`,
    both must answer (after a short wait) or the command stops with one line saying which; with
    `as_service`, the service role (DATABASE_SERVICE_USER) must log in too."""
    if not configured("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
    if not configured("REDIS_URL"):
        os.environ["REDIS_URL"] = ensure_redis()
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except SettingsError as exc:
        for name, message in exc.problems[:-1]:
            err(f"{name}: {message}")
        name, message = exc.problems[-1]
        fail(f"{name}: {message} (set it in the environment or .env; `just init` writes a .env)")
        raise  # unreachable; keeps type checkers content
    if reach:
        check_servers(settings, as_service=as_service)
    return settings
