"""What every command shares: output, refusal, and the settings with the servers they name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dotenv import dotenv_values

from auth_service.cli.embedded import ensure_postgres, ensure_redis
from auth_service.settings import Settings, SettingsError, get_settings

__all__ = ["ENV_FILE", "configured", "default_public_url", "err", "fail", "out", "resolve_servers"]

ENV_FILE = Path(".env")


def out(message: str) -> None:
    print(message, flush=True)


def err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def configured(name: str) -> bool:
    if os.environ.get(name):
        return True
    return ENV_FILE.is_file() and bool(dotenv_values(ENV_FILE).get(name))


def resolve_servers() -> Settings:
    """Settings, starting the embedded PostgreSQL / Redis for whichever URL is unset."""
    if not configured("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
    if not configured("REDIS_URL"):
        os.environ["REDIS_URL"] = ensure_redis()
    get_settings.cache_clear()
    try:
        return get_settings()
    except SettingsError as exc:
        for name, message in exc.problems[:-1]:
            err(f"{name}: {message}")
        name, message = exc.problems[-1]
        fail(f"{name}: {message} (set it in the environment or .env; `just init` writes a .env)")
        raise  # unreachable; keeps type checkers content


def default_public_url(host: str, port: int) -> None:
    """Links in e-mails point at where this API listens, unless PUBLIC_BASE_URL says otherwise."""
    if not configured("PUBLIC_BASE_URL"):
        scheme = "https" if configured("TLS_CERT_FILE") else "http"
        os.environ["PUBLIC_BASE_URL"] = f"{scheme}://{host}:{port}"
