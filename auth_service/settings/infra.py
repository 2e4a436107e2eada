"""The groups of the servers and processes: the app (where it listens, what it trusts), the
database, Redis, the job queue and telemetry."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from sqlalchemy.engine import make_url

from auth_service.settings.declare import (
    Problems,
    env,
    host_problem,
    normalize_database_url,
    positive,
    positive_seconds,
    tcp_port,
)

__all__ = ["AppSettings", "DatabaseSettings", "JobSettings", "RedisSettings", "TelemetrySettings"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class AppSettings(msgspec.Struct, frozen=True):
    env: Annotated[Literal["development", "production", "test"], env("APP_ENV", "development, production or test")] = (
        "development"
    )
    host: Annotated[str, env("HOST", "Where `api` (and `up`) listen")] = "127.0.0.1"
    port: Annotated[int, env("PORT", "The API's port")] = 8000
    public_base_url: Annotated[
        str,
        env(
            "PUBLIC_BASE_URL",
            "The service's external URL, for links in e-mails and pages; empty: http(s)://HOST:PORT, "
            "the same for the API and the worker",
        ),
    ] = ""
    cors_origins: Annotated[str, env("CORS_ORIGINS", "Comma-separated origins allowed by CORS (empty: none)")] = ""
    trusted_proxies: Annotated[
        str, env("TRUSTED_PROXIES", "Comma-separated IPs or CIDRs whose X-Forwarded-For is believed")
    ] = ""
    max_body_size: Annotated[int, env("MAX_BODY_SIZE", "Largest request body in bytes (then 413)")] = 65536
    hsts_max_age: Annotated[
        int,
        env("HSTS_MAX_AGE", "Strict-Transport-Security max-age over TLS (direct, or a trusted proxy's https); 0: off"),
    ] = 31536000
    tls_cert_file: Annotated[
        str, env("TLS_CERT_FILE", "PEM certificate chain; with TLS_KEY_FILE, `api` serves HTTPS itself")
    ] = ""
    tls_key_file: Annotated[str, env("TLS_KEY_FILE", "PEM private key of TLS_CERT_FILE")] = ""

    @property
    def base_url(self) -> str:
        """The service's external URL: PUBLIC_BASE_URL, else where `api` listens (HOST, PORT)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert_file else 'http'}://{host}:{self.port}"

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def trusted_proxy_networks(self) -> list[Network]:
        return [ipaddress.ip_network(item, strict=False) for item in _split(self.trusted_proxies)]

    def problems(self) -> Problems:
        problems: Problems = []
        try:
            _ = self.trusted_proxy_networks
        except ValueError:
            problems.append(("TRUSTED_PROXIES", "expected comma-separated IP addresses or CIDRs"))
        problems += positive("MAX_BODY_SIZE", self.max_body_size)
        if self.public_base_url and not self.public_base_url.startswith(("http://", "https://")):
            problems.append(("PUBLIC_BASE_URL", "expected the service's external http(s):// URL"))
        problems += tcp_port("PORT", self.port)
        if why := host_problem(self.host):
            problems.append(("HOST", why))
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            missing = "TLS_KEY_FILE" if self.tls_cert_file else "TLS_CERT_FILE"
            problems.append((missing, "set TLS_CERT_FILE and TLS_KEY_FILE together (or neither: plain HTTP)"))
        for variable, path in (("TLS_CERT_FILE", self.tls_cert_file), ("TLS_KEY_FILE", self.tls_key_file)):
            if path and not (Path(path).is_file() and os.access(path, os.R_OK)):
                problems.append((variable, f"{path} is not a readable file"))
        if self.hsts_max_age < 0:
            problems.append(("HSTS_MAX_AGE", "must be 0 (off) or a number of seconds"))
        return problems


class DatabaseSettings(msgspec.Struct, frozen=True):
    owner_url: Annotated[
        str,
        env(
            "DATABASE_URL",
            "postgresql:// URL of the tables' owner: migrations and `init` connect with it (unset: the embedded "
            "PostgreSQL). It must be allowed to create roles, or create DATABASE_SERVICE_USER yourself",
        ),
    ] = ""
    service_user: Annotated[
        str,
        env(
            "DATABASE_SERVICE_USER",
            "The role the API and the worker connect as (same server and database): it owns nothing and may only "
            "read and append the audit log; `init` creates it and grants its privileges",
        ),
    ] = "auth_service_app"
    service_password: Annotated[
        str,
        env(
            "DATABASE_SERVICE_PASSWORD",
            "Its password, set on the role by `init` each time; empty: derived from SECRET_KEY (else the signing "
            "secret)",
        ),
    ] = ""
    # Overflow connections are closed as soon as they are returned, so a pool smaller than the
    # usual concurrency reconnects all the time (with 10, 16 clients refreshing cost 30 % more
    # CPU per refresh: a new PostgreSQL session every 20 requests).
    pool_size: Annotated[int, env("DATABASE_POOL_SIZE", "Connections each API process keeps open")] = 20
    max_overflow: Annotated[int, env("DATABASE_MAX_OVERFLOW", "Connections opened past the pool under load")] = 10
    # A slow or frozen PostgreSQL answers 503 after these instead of piling up requests.
    pool_timeout: Annotated[float, env("DATABASE_POOL_TIMEOUT", "Seconds a request waits for a pooled connection")] = (
        2.0
    )
    connect_timeout: Annotated[float, env("DATABASE_CONNECT_TIMEOUT", "Seconds to open a connection")] = 2.0
    statement_timeout: Annotated[
        float, env("DATABASE_STATEMENT_TIMEOUT", "Seconds per statement (client and server side)")
    ] = 3.0

    @property
    def migration_url(self) -> str:
        """DATABASE_URL in the asyncpg form: the owner of the tables (migrations, `init`)."""
        return normalize_database_url(self.owner_url)

    @property
    def url(self) -> str:
        """Where the API, the worker and the CLI's user commands connect: DATABASE_URL's server and
        database, as DATABASE_SERVICE_USER with its (resolved) password."""
        owner = make_url(self.migration_url)
        service = owner.set(username=self.service_user, password=self.service_password)
        return service.render_as_string(hide_password=False)

    def problems(self) -> Problems:
        problems: Problems = []
        try:
            _ = self.migration_url
        except ValueError as exc:
            problems.append(("DATABASE_URL", str(exc) if self.owner_url else "is required (a postgresql:// URL)"))
        if not _ROLE_NAME.fullmatch(self.service_user):
            words = "expected a plain role name: a lowercase letter or _, then letters, digits or _"
            problems.append(("DATABASE_SERVICE_USER", words))
        problems += positive("DATABASE_POOL_SIZE", self.pool_size)
        if self.max_overflow < 0:
            problems.append(("DATABASE_MAX_OVERFLOW", "must be 0 or more"))
        problems += positive_seconds("DATABASE_POOL_TIMEOUT", self.pool_timeout)
        problems += positive_seconds("DATABASE_CONNECT_TIMEOUT", self.connect_timeout)
        problems += positive_seconds("DATABASE_STATEMENT_TIMEOUT", self.statement_timeout)
        return problems


class RedisSettings(msgspec.Struct, frozen=True):
    url: Annotated[str, env("REDIS_URL", "redis://, rediss:// or unix:// URL (unset: the embedded Redis)")] = ""
    key_prefix: Annotated[str, env("REDIS_KEY_PREFIX", "Prefix of every key the service writes")] = "auth"
    timeout: Annotated[
        float, env("REDIS_TIMEOUT", "Seconds per Redis connect, command, or wait for a pooled connection")
    ] = 2.0
    queue_redis_url: Annotated[str, env("QUEUE_REDIS_URL", "The job queue's Redis (empty: REDIS_URL)")] = ""
    celery_broker_url: Annotated[str, env("CELERY_BROKER_URL", "The Celery adapter's broker")] = ""

    @property
    def queue_url(self) -> str:
        return self.queue_redis_url or self.url

    def problems(self) -> Problems:
        problems: Problems = []
        if not self.url:
            problems.append(("REDIS_URL", "is required (a redis:// or unix:// URL)"))
        elif not self.url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(("REDIS_URL", "expected a redis://, rediss:// or unix:// URL"))
        problems += positive_seconds("REDIS_TIMEOUT", self.timeout)
        return problems


class JobSettings(msgspec.Struct, frozen=True):
    backend: Annotated[
        Literal["arq", "celery"], env("JOB_QUEUE_BACKEND", "arq, or celery (the adapter over the same jobs)")
    ] = "arq"
    timeout: Annotated[int, env("WORKER_JOB_TIMEOUT", "Seconds a job may run")] = 300

    def problems(self) -> Problems:
        return positive("WORKER_JOB_TIMEOUT", self.timeout)


class TelemetrySettings(msgspec.Struct, frozen=True):
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], env("LOG_LEVEL", "Log level")] = "INFO"
    log_format: Annotated[
        Literal["auto", "json", "console"], env("LOG_FORMAT", "json, console, or auto (console on a terminal)")
    ] = "auto"
    metrics_token: Annotated[
        str, env("METRICS_TOKEN", "Bearer token for /metrics from elsewhere than loopback (≥ 16 bytes; empty: off)")
    ] = ""
    trace_verify_sample_ratio: Annotated[
        float,
        env(
            "TRACE_VERIFY_SAMPLE_RATIO",
            "Share of /verify traces kept when the caller did not decide (other routes: all)",
        ),
    ] = 0.01
    worker_metrics_host: Annotated[str, env("WORKER_METRICS_HOST", "Where the worker's /metrics listens")] = "127.0.0.1"
    worker_metrics_port: Annotated[int, env("WORKER_METRICS_PORT", "The worker's /metrics port")] = 9101

    def problems(self) -> Problems:
        problems: Problems = []
        if self.metrics_token and len(self.metrics_token.encode()) < 16:
            problems.append(("METRICS_TOKEN", "must be at least 16 bytes (or empty: /metrics on loopback only)"))
        if not 0 <= self.trace_verify_sample_ratio <= 1:
            problems.append(("TRACE_VERIFY_SAMPLE_RATIO", "must be between 0 and 1"))
        problems += tcp_port("WORKER_METRICS_PORT", self.worker_metrics_port)
        if why := host_problem(self.worker_metrics_host):
            problems.append(("WORKER_METRICS_HOST", why))
        return problems
