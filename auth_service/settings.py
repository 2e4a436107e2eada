"""Settings: one msgspec Struct, loaded once from the environment and `.env`.

Every field is an environment variable of the same name in upper case. Values in
the process environment win over `.env`. A bad or missing value stops start-up with
one line that names the variable and says what is expected (`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from auth_service.lib.crypto.derive import PurposeKeys
from auth_service.lib.redis.ratelimit import RateLimit

__all__ = [
    "DatabaseSettings",
    "MailSettings",
    "PagesSettings",
    "PasswordSettings",
    "RateLimit",
    "RateLimits",
    "RedisSettings",
    "Settings",
    "SettingsError",
    "TelemetrySettings",
    "TokenSettings",
    "get_settings",
    "load_settings",
    "normalize_database_url",
]

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
SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class SettingsError(ValueError):
    """Settings that are missing or malformed: one line per problem, each naming its variable."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{name}: {message}" for name, message in problems))


class RateLimits(msgspec.Struct, frozen=True):
    """The parsed limit of each endpoint group."""

    login: RateLimit
    login_failures: RateLimit
    refresh: RateLimit
    api: RateLimit
    verify: RateLimit
    public: RateLimit
    email: RateLimit  # reset and verification mails, per address
    email_ip: RateLimit  # the same mails, per client IP


_RATE_LIMIT_FIELDS = (
    "rate_limit_email",
    "rate_limit_email_ip",
    "rate_limit_login",
    "rate_limit_api",
    "rate_limit_verify",
    "rate_limit_refresh",
    "rate_limit_login_failures",
    "rate_limit_public",
)


class DatabaseSettings(msgspec.Struct, frozen=True):
    url: str
    pool_size: int
    max_overflow: int
    pool_timeout: float
    connect_timeout: float
    statement_timeout: float


class RedisSettings(msgspec.Struct, frozen=True):
    url: str
    key_prefix: str
    timeout: float
    queue_url: str
    celery_broker_url: str


class TokenSettings(msgspec.Struct, frozen=True):
    algorithm: str
    secret: str
    private_key_file: str
    public_key_file: str
    key_id: str
    issuer: str
    audience: str
    access_ttl: int
    refresh_ttl: int
    reuse_grace: int


class PasswordSettings(msgspec.Struct, frozen=True):
    memory_kib: int
    time_cost: int
    parallelism: int
    workers: int
    queue: int
    min_length: int
    min_score: int


class MailSettings(msgspec.Struct, frozen=True):
    backend: str
    outbox_dir: str
    sender: str
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: str
    smtp_starttls: bool
    smtp_tls: bool
    smtp_timeout: float
    breaker_failures: int
    breaker_reset_seconds: float


class PagesSettings(msgspec.Struct, frozen=True):
    public_base_url: str
    not_me_link_ttl_hours: int
    docs_enabled: bool
    password_reset_ttl_minutes: int


class TelemetrySettings(msgspec.Struct, frozen=True):
    log_level: str
    log_format: str
    metrics_token: str
    trace_verify_sample_ratio: float
    worker_metrics_host: str
    worker_metrics_port: int


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every setting of the API and the worker, with its default.

    Read from flat environment variables (their names are the contract); the code reads them
    grouped per concern through the views below (`settings.tokens.algorithm`, `settings.redis.url`…).
    """

    app_env: Literal["development", "production", "test"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    docs_enabled: bool = True  # when unset, off with APP_ENV=production (load_settings)
    metrics_token: str = ""
    # Share of /verify traces kept when the caller did not decide (traceparent); other routes keep all.
    trace_verify_sample_ratio: float = 0.01
    # Where `api` (and `up`) listen. Unless PUBLIC_BASE_URL is set, links in e-mails point here,
    # for the API and the worker alike: one rule for every process.
    host: str = "127.0.0.1"
    port: int = 8000
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9101

    # The owner's URL: migrations and `init` connect with it. The API and the worker connect as
    # DATABASE_SERVICE_USER (same host and database), a role that owns nothing (db/roles.py).
    database_url: str = ""
    database_service_user: str = "auth_service_app"
    # Empty: derived from the signing material (HMAC, purpose "database-service-password"), so an
    # install that has a JWT secret needs nothing more; `init` sets it on the role every time.
    database_service_password: str = ""
    # Connections kept open. Overflow connections are closed as soon as they are returned, so a
    # pool smaller than the usual concurrency reconnects all the time (with 10, 16 clients
    # refreshing cost 30 % more CPU per refresh: a new PostgreSQL session every 20 requests).
    database_pool_size: int = 20
    database_max_overflow: int = 10
    # Seconds. A slow or frozen PostgreSQL answers 503 after these instead of piling up requests.
    database_pool_timeout: float = 2.0  # wait for a pooled connection
    database_connect_timeout: float = 2.0  # open a new connection
    database_statement_timeout: float = 3.0  # one statement (asyncpg command_timeout + server statement_timeout)
    redis_url: str = ""
    redis_key_prefix: str = "auth"
    redis_timeout: float = 2.0  # seconds per Redis connect, command, or wait for a pooled connection
    queue_redis_url: str = ""  # empty: the job queue shares REDIS_URL
    celery_broker_url: str = ""

    # The master secret every non-signing key derives from (lib/crypto/derive.py); `init` writes
    # one into a new .env. Empty: the keys derive from the signing material, as before it existed.
    secret_key: str = ""
    jwt_secret_key: str = ""
    jwt_algorithm: str = "HS256"
    jwt_private_key_file: str = ""
    jwt_public_key_file: str = ""
    jwt_key_id: str = ""
    jwt_expiration_minutes: int = 60
    jwt_issuer: str = "auth-service"
    jwt_audience: str = "auth-service-clients"
    refresh_token_expiration_days: int = 7
    refresh_reuse_grace_seconds: int = 10

    rate_limit_login: str = "5/minute"
    rate_limit_api: str = "100/minute"
    rate_limit_refresh: str = "10/hour"
    rate_limit_login_failures: str = "10/15minute"
    rate_limit_public: str = "300/minute"
    rate_limit_email: str = "3/hour"
    rate_limit_email_ip: str = "20/hour"
    rate_limit_verify: str = ""  # empty: same as RATE_LIMIT_API
    rate_limit_enabled: bool = True
    rate_limit_fail_open: bool = True

    cors_origins: str = ""
    trusted_proxies: str = ""
    max_body_size: int = 65536
    hsts_max_age: int = 31536000  # Strict-Transport-Security over TLS (direct, or a trusted proxy's https); 0: off
    tls_cert_file: str = ""  # both set: `api` serves HTTPS itself (PEM certificate chain and key)
    tls_key_file: str = ""

    job_queue_backend: Literal["arq", "celery"] = "arq"
    worker_job_timeout: int = 300
    email_backend: Literal["file", "smtp", "console"] = "file"
    email_outbox_dir: str = ".data/outbox"
    email_from: str = "Auth Service <no-reply@localhost>"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_timeout: float = 10.0
    smtp_breaker_failures: int = 5
    smtp_breaker_reset_seconds: float = 30.0
    public_base_url: str = ""  # empty: http(s)://HOST:PORT (see base_url)
    not_me_link_ttl_hours: int = 72
    password_reset_ttl_minutes: int = 30
    registration_enabled: bool = False
    registration_require_verified_email: bool = True
    suspicious_new_device_days: int = 30
    suspicious_failures: int = 5
    suspicious_failure_window_minutes: int = 15

    password_hash_workers: int = 0
    password_hash_queue: int = 64
    password_min_length: int = 12
    password_min_score: int = 0  # zxcvbn's 0-4; 0: no score needed
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1

    @property
    def access_ttl_seconds(self) -> int:
        return self.jwt_expiration_minutes * 60

    @property
    def refresh_ttl_seconds(self) -> int:
        return self.refresh_token_expiration_days * 86400

    @property
    def hash_workers(self) -> int:
        """PASSWORD_HASH_WORKERS, or one per CPU this process may run on (taskset, cgroups)."""
        if self.password_hash_workers:
            return self.password_hash_workers
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return len(usable) if usable else os.cpu_count() or 1

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in _split(self.trusted_proxies)]

    @property
    def job_redis_url(self) -> str:
        return self.queue_redis_url or self.redis_url

    @property
    def signing_material(self) -> bytes:
        """Key material other signatures derive from (the JWT secret, or the private key)."""
        if self.jwt_algorithm in SYMMETRIC_ALGORITHMS:
            return self.jwt_secret_key.encode()
        return Path(self.jwt_private_key_file).read_bytes()

    @property
    def rate_limits(self) -> RateLimits:
        return RateLimits(
            login=RateLimit.parse(self.rate_limit_login),
            login_failures=RateLimit.parse(self.rate_limit_login_failures),
            refresh=RateLimit.parse(self.rate_limit_refresh),
            api=RateLimit.parse(self.rate_limit_api),
            verify=RateLimit.parse(self.rate_limit_verify or self.rate_limit_api),
            public=RateLimit.parse(self.rate_limit_public),
            email=RateLimit.parse(self.rate_limit_email),
            email_ip=RateLimit.parse(self.rate_limit_email_ip),
        )

    @property
    def owner_database_url(self) -> str:
        """DATABASE_URL in the asyncpg form: the owner of the tables (migrations, `init`)."""
        return normalize_database_url(self.database_url)

    @property
    def purpose_keys(self) -> PurposeKeys:
        """Keys by purpose (links, refresh successors, …) from SECRET_KEY, else the signing material."""
        return PurposeKeys(self.secret_key.encode() if self.secret_key else None, self.signing_material)

    @property
    def service_database_password(self) -> str:
        if self.database_service_password:
            return self.database_service_password
        return self.purpose_keys.key("database-service-password").hex()

    @property
    def async_database_url(self) -> str:
        """Where the API, the worker and the CLI's user commands connect: DATABASE_URL's server
        and database, as DATABASE_SERVICE_USER."""
        url = make_url(self.owner_database_url)
        return url.set(username=self.database_service_user, password=self.service_database_password).render_as_string(
            hide_password=False
        )

    @property
    def base_url(self) -> str:
        """The service's external URL: PUBLIC_BASE_URL, else where `api` listens (HOST, PORT)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert_file else 'http'}://{host}:{self.port}"

    # ---- grouped views, per concern -------------------------------------------------------

    @property
    def database(self) -> DatabaseSettings:
        return DatabaseSettings(
            self.async_database_url,
            self.database_pool_size,
            self.database_max_overflow,
            self.database_pool_timeout,
            self.database_connect_timeout,
            self.database_statement_timeout,
        )

    @property
    def redis(self) -> RedisSettings:
        return RedisSettings(
            self.redis_url, self.redis_key_prefix, self.redis_timeout, self.job_redis_url, self.celery_broker_url
        )

    @property
    def tokens(self) -> TokenSettings:
        return TokenSettings(
            self.jwt_algorithm,
            self.jwt_secret_key,
            self.jwt_private_key_file,
            self.jwt_public_key_file,
            self.jwt_key_id,
            self.jwt_issuer,
            self.jwt_audience,
            self.access_ttl_seconds,
            self.refresh_ttl_seconds,
            self.refresh_reuse_grace_seconds,
        )

    @property
    def passwords(self) -> PasswordSettings:
        return PasswordSettings(
            self.argon2_memory_kib,
            self.argon2_time_cost,
            self.argon2_parallelism,
            self.hash_workers,
            self.password_hash_queue,
            self.password_min_length,
            self.password_min_score,
        )

    @property
    def mail(self) -> MailSettings:
        return MailSettings(
            self.email_backend,
            self.email_outbox_dir,
            self.email_from,
            self.smtp_host,
            self.smtp_port,
            self.smtp_username,
            self.smtp_password,
            self.smtp_starttls,
            self.smtp_tls,
            self.smtp_timeout,
            self.smtp_breaker_failures,
            self.smtp_breaker_reset_seconds,
        )

    @property
    def pages(self) -> PagesSettings:
        return PagesSettings(
            self.base_url, self.not_me_link_ttl_hours, self.docs_enabled, self.password_reset_ttl_minutes
        )

    @property
    def telemetry(self) -> TelemetrySettings:
        return TelemetrySettings(
            self.log_level,
            self.log_format,
            self.metrics_token,
            self.trace_verify_sample_ratio,
            self.worker_metrics_host,
            self.worker_metrics_port,
        )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def normalize_database_url(url: str) -> str:
    """Accept `postgresql://`, `postgres://` and `postgresql+asyncpg://`; return the asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// or postgresql+asyncpg:// URL")


def _problems(settings: Settings) -> list[tuple[str, str]]:
    """Cross-field checks: (variable, what is wrong) for each that fails."""
    problems: list[tuple[str, str]] = []
    try:
        _ = settings.owner_database_url
    except ValueError as exc:
        problems.append(("DATABASE_URL", str(exc) if settings.database_url else "is required (a postgresql:// URL)"))
    if not _ROLE_NAME.fullmatch(settings.database_service_user):
        problems.append(
            ("DATABASE_SERVICE_USER", "expected a plain role name: a lowercase letter or _, then letters, digits or _")
        )
    if not settings.redis_url:
        problems.append(("REDIS_URL", "is required (a redis:// or unix:// URL)"))
    elif not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(("REDIS_URL", "expected a redis://, rediss:// or unix:// URL"))
    if settings.secret_key:
        if settings.secret_key.strip().lower() in WELL_KNOWN_SECRETS:
            problems.append(("SECRET_KEY", "is a well-known example value; generate a random one"))
        elif len(settings.secret_key.encode()) < MIN_SECRET_BYTES:
            problems.append(("SECRET_KEY", f"must be at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32`)"))
        elif settings.secret_key == settings.jwt_secret_key:
            problems.append(("SECRET_KEY", "must differ from JWT_SECRET_KEY (rotating one must not change the other)"))
    if settings.jwt_algorithm in SYMMETRIC_ALGORITHMS:
        secret = settings.jwt_secret_key
        if not secret:
            problems.append(("JWT_SECRET_KEY", "is required; generate one with `just init` or `openssl rand -hex 32`"))
        elif secret.strip().lower() in WELL_KNOWN_SECRETS:
            problems.append(("JWT_SECRET_KEY", "is a well-known example value; generate a random one"))
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(("JWT_SECRET_KEY", f"must be at least {MIN_SECRET_BYTES} bytes"))
    elif settings.jwt_algorithm in ASYMMETRIC_ALGORITHMS:
        if not settings.jwt_private_key_file:
            problems.append(("JWT_PRIVATE_KEY_FILE", f"is required for {settings.jwt_algorithm} (a PEM file)"))
        else:
            # Imported here: joserfc stays in lib/crypto/tokens.py, and settings without keys never load it.
            from auth_service.lib.crypto.tokens import key_file_problem

            problem = key_file_problem(
                settings.jwt_algorithm, settings.jwt_private_key_file, settings.jwt_public_key_file
            )
            if problem:
                problems.append(problem)
    else:
        allowed = ", ".join(SYMMETRIC_ALGORITHMS + ASYMMETRIC_ALGORITHMS)
        problems.append(("JWT_ALGORITHM", f"expected one of {allowed}"))
    for name in _RATE_LIMIT_FIELDS:
        if not getattr(settings, name):
            continue  # RATE_LIMIT_VERIFY may be empty
        try:
            RateLimit.parse(getattr(settings, name))
        except ValueError as exc:
            problems.append((name.upper(), str(exc)))
    try:
        _ = settings.trusted_proxy_networks
    except ValueError:
        problems.append(("TRUSTED_PROXIES", "expected comma-separated IP addresses or CIDRs"))
    positive = (
        "jwt_expiration_minutes",
        "refresh_token_expiration_days",
        "max_body_size",
        "password_hash_queue",
        "database_pool_size",
        "worker_job_timeout",
        "not_me_link_ttl_hours",
        "password_reset_ttl_minutes",
        "suspicious_new_device_days",
        "suspicious_failures",
        "suspicious_failure_window_minutes",
        "smtp_breaker_failures",
    )
    problems += [(name.upper(), "must be a positive integer") for name in positive if getattr(settings, name) < 1]
    if settings.smtp_tls and settings.smtp_starttls and settings.email_backend == "smtp":
        problems.append(("SMTP_STARTTLS", "set SMTP_TLS (implicit TLS, port 465) or SMTP_STARTTLS, not both"))
    if settings.public_base_url and not settings.public_base_url.startswith(("http://", "https://")):
        problems.append(("PUBLIC_BASE_URL", "expected the service's external http(s):// URL"))
    if settings.metrics_token and len(settings.metrics_token.encode()) < 16:
        problems.append(("METRICS_TOKEN", "must be at least 16 bytes (or empty: /metrics on loopback only)"))
    timeouts = (
        "database_pool_timeout",
        "database_connect_timeout",
        "database_statement_timeout",
        "redis_timeout",
        "smtp_timeout",
        "smtp_breaker_reset_seconds",
    )
    problems += [
        (name.upper(), "must be a positive number of seconds")
        for name in timeouts
        if not 0 < getattr(settings, name) < math.inf  # also refuses nan and inf
    ]
    for name in ("smtp_port", "port", "worker_metrics_port"):
        if not 1 <= getattr(settings, name) <= 65535:
            problems.append((name.upper(), f"must be a TCP port (1-65535), not {getattr(settings, name)}"))
    for name in ("host", "worker_metrics_host"):
        if why := host_problem(getattr(settings, name)):
            problems.append((name.upper(), why))
    if settings.database_max_overflow < 0:
        problems.append(("DATABASE_MAX_OVERFLOW", "must be 0 or more"))
    # Upper bounds: lifetimes past these are mistakes, and would overflow date arithmetic.
    for name, most in (("jwt_expiration_minutes", 60 * 24 * 31), ("refresh_token_expiration_days", 3660)):
        if getattr(settings, name) > most:
            problems.append((name.upper(), f"must be at most {most}"))
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        missing = "TLS_KEY_FILE" if settings.tls_cert_file else "TLS_CERT_FILE"
        problems.append((missing, "set TLS_CERT_FILE and TLS_KEY_FILE together (or neither: plain HTTP)"))
    for name in ("tls_cert_file", "tls_key_file"):
        path = getattr(settings, name)
        if path and not (Path(path).is_file() and os.access(path, os.R_OK)):
            problems.append((name.upper(), f"{path} is not a readable file"))
    if settings.hsts_max_age < 0:
        problems.append(("HSTS_MAX_AGE", "must be 0 (off) or a number of seconds"))
    if not 0 <= settings.trace_verify_sample_ratio <= 1:
        problems.append(("TRACE_VERIFY_SAMPLE_RATIO", "must be between 0 and 1"))
    if settings.refresh_reuse_grace_seconds < 0:
        problems.append(("REFRESH_REUSE_GRACE_SECONDS", "must be 0 or more"))
    if not 8 <= settings.password_min_length <= 256:
        problems.append(("PASSWORD_MIN_LENGTH", "must be between 8 and 256 characters"))
    if not 0 <= settings.password_min_score <= 4:
        problems.append(("PASSWORD_MIN_SCORE", "must be a zxcvbn score from 0 (off) to 4"))
    if settings.password_hash_workers < 0:
        problems.append(("PASSWORD_HASH_WORKERS", "must be 0 (one per CPU) or more"))
    # OWASP's argon2id minimum: m=19 MiB, t=2, p=1.
    if settings.argon2_memory_kib < 19456 or settings.argon2_time_cost < 2 or settings.argon2_parallelism < 1:
        problems.append(("ARGON2_MEMORY_KIB", "argon2id below OWASP's minimum (m=19456 KiB, t=2, p=1) is refused"))
    return problems


_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
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


def load_settings(env: dict[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build Settings from `.env` overlaid with the environment.

    Args:
        env: the environment to read (default `os.environ`).
        env_file: a dotenv file read first; a missing file is fine.

    Raises:
        SettingsError: a value is missing or malformed.
    """
    source: dict[str, Any] = {}
    if env_file and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if env is None else env)
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    raw = {key.lower(): value for key, value in source.items() if key.lower() in fields and key.isupper()}
    # Each value on its own first, so every malformed one is reported, not only the first.
    types = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    malformed: list[tuple[str, str]] = []
    for key in sorted(raw):
        try:
            msgspec.convert(raw[key], types[key], strict=False)
        except msgspec.ValidationError as exc:
            malformed.append((key.upper(), _malformed(str(exc), raw[key], types[key])))
    good = {key: value for key, value in raw.items() if key.upper() not in {name for name, _ in malformed}}
    try:
        settings = msgspec.convert(good, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError([*malformed, _describe(exc)]) from None
    if settings.app_env == "production" and "docs_enabled" not in raw:
        # Production does not publish its API map unless asked to (DOCS_ENABLED=true).
        settings = msgspec.structs.replace(settings, docs_enabled=False)
    if problems := malformed + _problems(settings):
        raise SettingsError(problems)
    return settings


def _malformed(message: str, value: Any, kind: Any) -> str:
    # msgspec says "Expected `int`, got `str`": say what was given, in words (only non-secret
    # settings are typed: every secret is a str and never malformed).
    message = message.split(" - at ")[0]
    shown = repr(str(value)[:40])
    words = {"Expected `int`, got `str`": "expected a whole number", "Expected `float`, got `str`": "expected a number"}
    words["Expected `bool`, got `str`"] = "expected true or false"
    if message.startswith("Invalid enum value"):
        return f"expected one of {', '.join(get_args(kind))}, got {shown}"
    return f"{words.get(message, message)}, got {shown}"


def _describe(exc: msgspec.ValidationError) -> tuple[str, str]:
    # msgspec says "Expected `int`, got `str` - at `$.jwt_expiration_minutes`"
    message = str(exc)
    match = re.search(r"at `\$\.(\w+)`", message)
    if not match:
        return "SETTINGS", message
    return match.group(1).upper(), message.split(" - at ")[0]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
