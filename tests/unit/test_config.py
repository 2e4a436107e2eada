from __future__ import annotations

import pytest

from auth_service.settings import RateLimit, SettingsError, load_settings

GOOD = {
    "DATABASE_URL": "postgresql://u@localhost/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "JWT_SECRET_KEY": "x" * 32,
}


def test_defaults_follow_the_seed() -> None:
    settings = load_settings(env=GOOD, env_file=None)
    assert settings.tokens.algorithm == "HS256"
    assert settings.tokens.expiration_minutes == 60
    assert settings.limits.login == "5/minute"
    assert settings.limits.api == "100/minute"
    assert settings.tokens.refresh_ttl == 7 * 86400
    assert settings.app.max_body_size == 65536
    assert settings.tokens.reuse_grace == 10


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql+asyncpg://u@h/db", "postgres://u@h/db"])
def test_database_url_accepts_both_schemes(url: str) -> None:
    settings = load_settings(env={**GOOD, "DATABASE_URL": url}, env_file=None)
    assert settings.database.migration_url == "postgresql+asyncpg://u@h/db"
    # The API and the worker connect to the same server and database as the service role.
    password = settings.database.service_password
    assert len(password) == 64 and password not in GOOD.values()
    assert settings.database.url == f"postgresql+asyncpg://auth_service_app:{password}@h/db"


def test_the_service_role_and_its_password_can_be_named_and_a_bad_name_is_one_line() -> None:
    env = {**GOOD, "DATABASE_URL": "postgresql://owner:pw@h:5433/db?ssl=require"}
    settings = load_settings(
        env={**env, "DATABASE_SERVICE_USER": "svc", "DATABASE_SERVICE_PASSWORD": "p@ss:w/rd"}, env_file=None
    )
    assert settings.database.url == "postgresql+asyncpg://svc:p%40ss%3Aw%2Frd@h:5433/db?ssl=require"
    with pytest.raises(SettingsError) as caught:
        load_settings(env={**env, "DATABASE_SERVICE_USER": 'x"; DROP ROLE postgres; --'}, env_file=None)
    assert [name for name, _ in caught.value.problems] == ["DATABASE_SERVICE_USER"]


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "your-256-bit-secret"}, "JWT_SECRET_KEY"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"JWT_EXPIRATION_MINUTES": "soon"}, "JWT_EXPIRATION_MINUTES"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"RATE_LIMIT_LOGIN": "lots"}, "RATE_LIMIT_LOGIN"),
        ({"TRUSTED_PROXIES": "not-an-ip"}, "TRUSTED_PROXIES"),
        ({"ARGON2_MEMORY_KIB": "1024"}, "ARGON2_MEMORY_KIB"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_value_names_the_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={**GOOD, **change}, env_file=None)
    assert str(info.value).startswith(variable + ":")
    assert "\n" not in str(info.value)


def test_environment_overrides_env_file(tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("JWT_EXPIRATION_MINUTES=5\nJWT_ISSUER=from-file\n")
    settings = load_settings(env={**GOOD, "JWT_ISSUER": "from-env"}, env_file=env_file)
    assert settings.tokens.expiration_minutes == 5
    assert settings.tokens.issuer == "from-env"


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("5/minute", 5, 60),
        ("100/minute", 100, 60),
        ("10/hour", 10, 3600),
        ("10/15minutes", 10, 900),
        ("3/2second", 3, 2),
    ],
)
def test_rate_limit_notation(text: str, limit: int, period: int) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, period)


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    bad = {
        "JWT_EXPIRATION_MINUTES": "soon",
        "RATE_LIMIT_LOGIN": "lots",
        "LOG_LEVEL": "LOUD",
        "TRUSTED_PROXIES": "not-an-ip",
        "ARGON2_MEMORY_KIB": "1024",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env={**GOOD, **bad}, env_file=None)
    lines = str(info.value).splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted(bad)
    assert [name for name, _ in info.value.problems] == [line.split(":", 1)[0] for line in lines]


def test_grouped_views_read_the_same_variables() -> None:
    settings = load_settings(
        env={
            **GOOD,
            "JWT_ISSUER": "issuer-x",
            "JWT_EXPIRATION_MINUTES": "5",
            "REDIS_TIMEOUT": "1.5",
            "QUEUE_REDIS_URL": "redis://127.0.0.1:6379/3",
            "SMTP_PORT": "2525",
            "EMAIL_BACKEND": "smtp",
            "DATABASE_POOL_SIZE": "7",
            "ARGON2_TIME_COST": "3",
            "PUBLIC_BASE_URL": "https://auth.example.com",
            "METRICS_TOKEN": "m" * 20,
        },
        env_file=None,
    )
    assert settings.tokens.issuer == "issuer-x" and settings.tokens.access_ttl == 300
    assert settings.redis.timeout == 1.5 and settings.redis.queue_url == "redis://127.0.0.1:6379/3"
    assert settings.mail.smtp_port == 2525 and settings.mail.backend == "smtp"
    assert settings.database.pool_size == 7 and settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.passwords.time_cost == 3
    assert settings.app.base_url == "https://auth.example.com"
    assert settings.telemetry.metrics_token == "m" * 20


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_LOGIN", "5/0minute"),  # a zero-length period would switch the limit off
        ("REDIS_TIMEOUT", "nan"),
        ("DATABASE_STATEMENT_TIMEOUT", "inf"),
        ("SMTP_TIMEOUT", "-5"),
        ("SMTP_PORT", "0"),
        ("DATABASE_MAX_OVERFLOW", "-3"),
        ("JWT_EXPIRATION_MINUTES", "99999999999"),
        ("REFRESH_TOKEN_EXPIRATION_DAYS", "1000000"),
    ],
)
def test_values_that_would_silently_disable_or_overflow_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={**GOOD, variable: value}, env_file=None)
    assert [name for name, _ in info.value.problems] == [variable]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PORT", "abc", "PORT: expected a whole number, got 'abc'"),
        ("PORT", "70000", "PORT: must be a TCP port (1-65535), not 70000"),
        ("WORKER_METRICS_PORT", "0", "WORKER_METRICS_PORT: must be a TCP port (1-65535), not 0"),
        ("HOST", "0.0.0.0.0", "HOST: '0.0.0.0.0' is neither an IP address nor a host name"),
        ("HOST", "bad host", "HOST: 'bad host' is neither an IP address nor a host name"),
        ("DOCS_ENABLED", "maybe", "DOCS_ENABLED: expected true or false, got 'maybe'"),
        ("APP_ENV", "prod", "APP_ENV: expected one of development, production, test, got 'prod'"),
    ],
)
def test_a_malformed_value_is_one_line_in_words(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={**GOOD, variable: value}, env_file=None)
    assert len(info.value.problems) == 1
    name, message = info.value.problems[0]
    assert f"{name}: {message}".startswith(says)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "auth.internal"])
def test_hosts_that_are_addresses_or_names_pass(host: str) -> None:
    assert load_settings(env={**GOOD, "HOST": host}, env_file=None).app.host == host


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"PORT": "18400"}, "http://127.0.0.1:18400"),  # the worker's links follow the API's port
        ({"HOST": "::1", "PORT": "9000"}, "http://[::1]:9000"),
        ({"PUBLIC_BASE_URL": "https://auth.example.com/", "PORT": "18400"}, "https://auth.example.com"),
    ],
)
def test_links_point_where_the_api_listens_unless_told_otherwise(env: dict[str, str], base: str) -> None:
    """One rule for every process: the API, `up`, and a worker started on its own read the same
    settings, so e-mail links agree with where `api` listens."""
    assert load_settings(env={**GOOD, **env}, env_file=None).app.base_url == base
