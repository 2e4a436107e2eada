"""How a setting is declared: its field in a group, with the environment variable it is read
from, its default and its description in one place (`env`), and the checks shared by groups."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import msgspec

__all__ = [
    "MIN_SECRET_BYTES",
    "WELL_KNOWN_SECRETS",
    "Problems",
    "SettingsError",
    "env",
    "env_name",
    "host_problem",
    "normalize_database_url",
    "positive",
    "positive_seconds",
    "tcp_port",
]

Problems = list[tuple[str, str]]

# Secrets that appear in examples and tutorials; a deployment that copied one is refused.
WELL_KNOWN_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "your-secret-key",
        "your-256-bit-secret",
        "super-secret-key",
        "please-change-this-secret-key-in-production",
        # Long enough to pass the length check, and published: jwt.io's default secret, FastAPI's
        # tutorial SECRET_KEY, Supabase's self-hosting .env.example.
        "a-string-secret-at-least-256-bits-long",
        "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
        "your-super-secret-jwt-token-with-at-least-32-characters-long",
    }
)
MIN_SECRET_BYTES = 32


class SettingsError(ValueError):
    """Settings that are missing or malformed: one line per problem, each naming its variable."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{name}: {message}" for name, message in problems))


def env(name: str, description: str) -> msgspec.Meta:
    """A field's declaration: the environment variable it is read from (the contract) and what
    it is for (the configuration reference is generated from it)."""
    return msgspec.Meta(description=description, extra={"env": name})


def env_name(field_type: Any) -> str:
    """The environment variable of a declared field's (Annotated) type."""
    for meta in getattr(field_type, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra and "env" in meta.extra:
            return str(meta.extra["env"])
    raise TypeError(f"{field_type!r} is not declared with env()")


def positive(variable: str, value: int) -> Problems:
    return [] if value >= 1 else [(variable, "must be a positive integer")]


def positive_seconds(variable: str, value: float) -> Problems:
    # Also refuses nan and inf.
    return [] if 0 < value < math.inf else [(variable, "must be a positive number of seconds")]


def tcp_port(variable: str, value: int) -> Problems:
    return [] if 1 <= value <= 65535 else [(variable, f"must be a TCP port (1-65535), not {value}")]


def normalize_database_url(url: str) -> str:
    """Accept `postgresql://`, `postgres://` and `postgresql+asyncpg://`; return the asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// or postgresql+asyncpg:// URL")


_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def host_problem(host: str) -> str | None:
    """Why `host` is neither an IP address nor a host name (None: it is one)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    looks_numeric = bool(host) and all(part.isdigit() for part in host.split("."))
    if looks_numeric or not host or len(host) > 253 or not all(_HOSTNAME_LABEL.fullmatch(x) for x in host.split(".")):
        return f"{host!r} is neither an IP address nor a host name (e.g. 127.0.0.1, 0.0.0.0, ::1, localhost)"
    return None
