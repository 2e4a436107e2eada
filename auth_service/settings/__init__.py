"""Settings: one declaration per setting, in the group of its concern.

Each group (settings/infra.py, settings/policy.py) declares its fields once: the environment
variable a field is read from (its name is the contract), its default, its description and,
in the group's `problems()`, its checks. `load_settings` reads every declared variable from
`.env` overlaid with the process environment, reports every malformed or inconsistent value at
once, one line each naming its variable (`SettingsError`), and resolves the few derived
defaults (the database role's password, the passkeys' RP id and origins). The configuration
reference of the docs is generated from the same declaration (`describe`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, get_args

import msgspec
from dotenv import dotenv_values

from auth_service.lib.crypto.derive import PurposeKeys
from auth_service.lib.redis.ratelimit import RateLimit
from auth_service.settings.declare import (
    MIN_SECRET_BYTES,
    WELL_KNOWN_SECRETS,
    Problems,
    SettingsError,
    env_name,
    host_problem,
    normalize_database_url,
)
from auth_service.settings.factors import MfaSettings
from auth_service.settings.infra import AppSettings, DatabaseSettings, JobSettings, RedisSettings, TelemetrySettings
from auth_service.settings.policy import (
    ASYMMETRIC_ALGORITHMS,
    SYMMETRIC_ALGORITHMS,
    AccountSettings,
    KeySettings,
    LimitSettings,
    LinkSettings,
    MailSettings,
    PageSettings,
    PasswordSettings,
    RateLimits,
    TokenSettings,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "MIN_SECRET_BYTES",
    "SYMMETRIC_ALGORITHMS",
    "WELL_KNOWN_SECRETS",
    "AccountSettings",
    "AppSettings",
    "DatabaseSettings",
    "Declared",
    "JobSettings",
    "KeySettings",
    "LimitSettings",
    "LinkSettings",
    "MailSettings",
    "MfaSettings",
    "PageSettings",
    "PasswordSettings",
    "RateLimit",
    "RateLimits",
    "RedisSettings",
    "Settings",
    "SettingsError",
    "TelemetrySettings",
    "TokenSettings",
    "describe",
    "get_settings",
    "host_problem",
    "load_settings",
    "normalize_database_url",
]


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every setting of the API, the worker and the CLI, grouped per concern."""

    app: AppSettings = msgspec.field(default_factory=AppSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    jobs: JobSettings = msgspec.field(default_factory=JobSettings)
    tokens: TokenSettings = msgspec.field(default_factory=TokenSettings)
    keys: KeySettings = msgspec.field(default_factory=KeySettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    passwords: PasswordSettings = msgspec.field(default_factory=PasswordSettings)
    links: LinkSettings = msgspec.field(default_factory=LinkSettings)
    accounts: AccountSettings = msgspec.field(default_factory=AccountSettings)
    mfa: MfaSettings = msgspec.field(default_factory=MfaSettings)
    mail: MailSettings = msgspec.field(default_factory=MailSettings)
    telemetry: TelemetrySettings = msgspec.field(default_factory=TelemetrySettings)
    pages: PageSettings = msgspec.field(default_factory=PageSettings)

    @property
    def purpose_keys(self) -> PurposeKeys:
        """Keys by purpose (links, refresh successors, …) from SECRET_KEY, else the signing material."""
        master = self.keys.secret_key.encode() if self.keys.secret_key else None
        return PurposeKeys(master, self.tokens.signing_material)

    def problems(self) -> Problems:
        """Every group's checks, then those across groups."""
        problems: Problems = []
        for name in _GROUPS:
            group = getattr(self, name)
            if name in _CHECKED_WITH:
                problems += group.problems(getattr(self, _CHECKED_WITH[name]))
            else:
                problems += group.problems()
        return problems


_GROUPS = tuple(field.name for field in msgspec.structs.fields(Settings))
# Groups whose checks read another group: SECRET_KEY must differ from the JWT key; the passkeys'
# RP id and origins default to the app's URL.
_CHECKED_WITH = {"keys": "tokens", "mfa": "app"}


class Declared(NamedTuple):
    """One declared setting, as the configuration reference shows it."""

    group: str
    variable: str
    type: str
    default: Any
    description: str


def _declarations() -> Iterator[tuple[str, str, str, Any]]:
    """(group, field, variable, type) of every declared setting."""
    for group in msgspec.structs.fields(Settings):
        for field in msgspec.structs.fields(group.default_factory):  # type: ignore[arg-type]
            yield group.name, field.name, env_name(field.type), field.type


def describe() -> list[Declared]:
    """Every setting: its group, variable, type, default and description (the docs' reference)."""
    rows = []
    for group in msgspec.structs.fields(Settings):
        defaults = group.default_factory()  # type: ignore[misc]
        for field in msgspec.structs.fields(type(defaults)):
            meta = field.type.__metadata__[0]
            kind = get_args(field.type)[0]
            shown = "|".join(get_args(kind)) if get_args(kind) else getattr(kind, "__name__", str(kind))
            rows.append(
                Declared(group.name, env_name(field.type), shown, getattr(defaults, field.name), meta.description)
            )
    return rows


def load_settings(env: dict[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build Settings from `.env` overlaid with the environment.

    Args:
        env: the environment to read (default `os.environ`).
        env_file: a dotenv file read first; a missing file is fine.

    Raises:
        SettingsError: a value is missing or malformed.
    """
    import os

    source: dict[str, Any] = {}
    if env_file and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if env is None else env)
    # Each value on its own first, so every malformed one is reported, not only the first.
    values: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
    malformed: Problems = []
    for group, field, variable, kind in _declarations():
        if variable not in source:
            continue
        try:
            values[group][field] = msgspec.convert(source[variable], kind, strict=False)
        except msgspec.ValidationError as exc:
            malformed.append((variable, _malformed(str(exc), source[variable], kind)))
    if values["app"].get("env") == "production" and "DOCS_ENABLED" not in source:
        values["pages"]["docs_enabled"] = False  # production does not publish its API map unless asked to
    settings = msgspec.convert(values, Settings)
    if problems := malformed + settings.problems():
        raise SettingsError(problems)
    settings = msgspec.structs.replace(settings, mfa=settings.mfa.resolved(settings.app))
    if not settings.database.service_password:
        derived = settings.purpose_keys.key("database-service-password").hex()
        database = msgspec.structs.replace(settings.database, service_password=derived)
        settings = msgspec.structs.replace(settings, database=database)
    return settings


def _malformed(message: str, value: Any, kind: Any) -> str:
    # msgspec says "Expected `int`, got `str`": say what was given, in words (only non-secret
    # settings are typed: every secret is a str and never malformed).
    message = re.sub(r" - at .*$", "", message)
    shown = repr(str(value)[:40])
    words = {"Expected `int`, got `str`": "expected a whole number", "Expected `float`, got `str`": "expected a number"}
    words["Expected `bool`, got `str`"] = "expected true or false"
    if message.startswith("Invalid enum value"):
        return f"expected one of {', '.join(get_args(get_args(kind)[0]))}, got {shown}"
    return f"{words.get(message, message)}, got {shown}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
