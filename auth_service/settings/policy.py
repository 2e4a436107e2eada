"""The groups of what the service decides: tokens and keys, rate limits, passwords, account
links and accounts, mail, and pages (second factors: settings/factors.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from auth_service.lib.redis.ratelimit import RateLimit
from auth_service.settings.declare import (
    MIN_SECRET_BYTES,
    WELL_KNOWN_SECRETS,
    Problems,
    env,
    positive,
    positive_seconds,
    tcp_port,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JWKS_MAX_AGE",
    "MANAGED_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "AccountSettings",
    "KeySettings",
    "LimitSettings",
    "LinkSettings",
    "MailSettings",
    "PageSettings",
    "PasswordSettings",
    "RateLimits",
    "TokenSettings",
]

SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "Ed25519")
# What a managed signing key (signing_keys, `just keys`) can be; Ed25519 is RFC 9864's fully-specified name.
MANAGED_ALGORITHMS = ("ES256", "RS256", "Ed25519")
# The JWKS's Cache-Control max-age: a relying party may hold the key set this long.
JWKS_MAX_AGE = 300


def _secret_problem(variable: str, secret: str) -> Problems:
    if secret.strip().lower() in WELL_KNOWN_SECRETS:
        return [(variable, "is a well-known example value; generate a random one")]
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return [(variable, f"must be at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32`)")]
    return []


class TokenSettings(msgspec.Struct, frozen=True):
    algorithm: Annotated[
        str,
        env(
            "JWT_ALGORITHM",
            "Access tokens: HS256/384/512 with JWT_SECRET_KEY; ES256, RS256 or Ed25519 without JWT_PRIVATE_KEY_FILE: "
            "the managed signing key (SIGNING_KEY_ALGORITHM), verifiable from the JWKS; RS*/PS256/ES*/EdDSA with "
            "JWT_PRIVATE_KEY_FILE: that PEM key",
        ),
    ] = "HS256"
    secret: Annotated[
        str,
        env("JWT_SECRET_KEY", "HMAC secret, ≥ 32 bytes (`just init` generates one); well-known examples are refused"),
    ] = ""
    private_key_file: Annotated[str, env("JWT_PRIVATE_KEY_FILE", "PEM private key (asymmetric algorithms)")] = ""
    public_key_file: Annotated[
        str, env("JWT_PUBLIC_KEY_FILE", "PEM public key (derived from the private if unset)")
    ] = ""
    key_id: Annotated[str, env("JWT_KEY_ID", "The `kid` header (derived from the key if unset)")] = ""
    expiration_minutes: Annotated[int, env("JWT_EXPIRATION_MINUTES", "Access token lifetime")] = 60
    issuer: Annotated[str, env("JWT_ISSUER", "`iss` written and required")] = "auth-service"
    audience: Annotated[str, env("JWT_AUDIENCE", "`aud` written and required")] = "auth-service-clients"
    refresh_days: Annotated[int, env("REFRESH_TOKEN_EXPIRATION_DAYS", "Refresh token lifetime")] = 7
    reuse_grace: Annotated[
        int,
        env("REFRESH_REUSE_GRACE_SECONDS", "Seconds a spent refresh token still gets its successor (two tabs at once)"),
    ] = 10

    @property
    def access_ttl(self) -> int:
        return self.expiration_minutes * 60

    @property
    def refresh_ttl(self) -> int:
        return self.refresh_days * 86400

    @property
    def managed(self) -> bool:
        """Access tokens signed by the managed signing key (no PEM file given)."""
        return self.algorithm in MANAGED_ALGORITHMS and not self.private_key_file

    @property
    def signing_material(self) -> bytes:
        """The JWT key's bytes (the secret, or the private key): the purpose keys' source until
        SECRET_KEY is set (with managed keys: JWT_SECRET_KEY, if any)."""
        if self.algorithm in SYMMETRIC_ALGORITHMS or self.managed:
            return self.secret.encode()
        return Path(self.private_key_file).read_bytes()

    def problems(self) -> Problems:
        problems: Problems = []
        if self.algorithm in SYMMETRIC_ALGORITHMS:
            if not self.secret:
                words = "is required; generate one with `just init` or `openssl rand -hex 32`"
                problems.append(("JWT_SECRET_KEY", words))
            elif self.secret.strip().lower() in WELL_KNOWN_SECRETS:
                problems.append(("JWT_SECRET_KEY", "is a well-known example value; generate a random one"))
            elif len(self.secret.encode()) < MIN_SECRET_BYTES:
                problems.append(("JWT_SECRET_KEY", f"must be at least {MIN_SECRET_BYTES} bytes"))
        elif self.managed:
            pass  # the managed key: its checks are the keys group's (SIGNING_KEY_ALGORITHM, SECRET_KEY)
        elif self.algorithm in ASYMMETRIC_ALGORITHMS:
            if not self.private_key_file:
                problems.append(("JWT_PRIVATE_KEY_FILE", f"is required for {self.algorithm} (a PEM file)"))
            else:
                # Imported here: joserfc stays in lib/crypto/tokens.py, and settings without keys never load it.
                from auth_service.lib.crypto.tokens import key_file_problem

                if problem := key_file_problem(self.algorithm, self.private_key_file, self.public_key_file):
                    problems.append(problem)
        else:
            allowed = ", ".join(SYMMETRIC_ALGORITHMS + ASYMMETRIC_ALGORITHMS)
            problems.append(("JWT_ALGORITHM", f"expected one of {allowed}"))
        # Upper bounds: lifetimes past these are mistakes, and would overflow date arithmetic.
        for variable, value, most in (
            ("JWT_EXPIRATION_MINUTES", self.expiration_minutes, 60 * 24 * 31),
            ("REFRESH_TOKEN_EXPIRATION_DAYS", self.refresh_days, 3660),
        ):
            if value < 1:
                problems.append((variable, "must be a positive integer"))
            elif value > most:
                problems.append((variable, f"must be at most {most}"))
        if self.reuse_grace < 0:
            problems.append(("REFRESH_REUSE_GRACE_SECONDS", "must be 0 or more"))
        return problems


class KeySettings(msgspec.Struct, frozen=True):
    secret_key: Annotated[
        str,
        env(
            "SECRET_KEY",
            "The master secret (≥ 32 bytes, not JWT_SECRET_KEY) every non-signing key derives from by HKDF with a "
            "purpose label: e-mailed links, refresh successors, the database role's password; `just init` writes "
            "one into a new .env. Unset (an older install): they derive from the signing material as before",
        ),
    ] = ""
    signing_algorithm: Annotated[
        str,
        env(
            "SIGNING_KEY_ALGORITHM",
            "The managed signing keys' algorithm (ID tokens; access tokens with JWT_ALGORITHM alike): ES256, RS256 "
            "or Ed25519. A change applies to the next key (`just keys rotate`)",
        ),
    ] = "ES256"
    rotation_delay: Annotated[
        str,
        env(
            "KEY_ROTATION_DELAY",
            f"From `just keys rotate` until the new key signs (it is published at once): seconds, or 15m, 1h; at "
            f"least the JWKS cache lifetime ({JWKS_MAX_AGE} s) plus KEY_REFRESH_SECONDS",
        ),
    ] = "15m"
    refresh_seconds: Annotated[
        float,
        env("KEY_REFRESH_SECONDS", "How often every instance rereads the signing keys (at most 60)"),
    ] = 30.0

    @property
    def rotation_delay_seconds(self) -> int:
        return _duration_seconds(self.rotation_delay) or 0

    def problems(self, tokens: TokenSettings) -> Problems:
        problems: Problems = []
        if self.signing_algorithm not in MANAGED_ALGORITHMS:
            problems.append(("SIGNING_KEY_ALGORITHM", f"expected one of {', '.join(MANAGED_ALGORITHMS)}"))
        elif tokens.managed and tokens.algorithm != self.signing_algorithm:
            words = f"is {self.signing_algorithm} but JWT_ALGORITHM={tokens.algorithm} asks the managed key to sign"
            problems.append(("SIGNING_KEY_ALGORITHM", words + " access tokens; set them alike"))
        if not 0 < self.refresh_seconds <= 60:
            problems.append(("KEY_REFRESH_SECONDS", "must be more than 0 and at most 60"))
        delay = _duration_seconds(self.rotation_delay)
        if delay is None:
            problems.append(
                ("KEY_ROTATION_DELAY", f"expected seconds, or a number with s, m or h; got {self.rotation_delay!r}")
            )
        elif delay < JWKS_MAX_AGE + self.refresh_seconds:
            least = JWKS_MAX_AGE + self.refresh_seconds
            words = f"must be at least {least:g} s (the JWKS cache lifetime plus KEY_REFRESH_SECONDS): "
            problems.append(("KEY_ROTATION_DELAY", words + "relying parties must hold a key before it signs"))
        if tokens.managed and not (self.secret_key or tokens.secret):
            problems.append(
                ("SECRET_KEY", f"is required with JWT_ALGORITHM={tokens.algorithm} (it wraps the private keys)")
            )
        if not self.secret_key:
            return problems
        if secret := _secret_problem("SECRET_KEY", self.secret_key):
            return problems + secret
        if self.secret_key == tokens.secret:
            problems.append(("SECRET_KEY", "must differ from JWT_SECRET_KEY (rotating one must not change the other)"))
        return problems


def _duration_seconds(text: str) -> int | None:
    """`900`, `900s`, `15m`, `1h` as seconds; None when it is none of those."""
    text = text.strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or len(number) > 9:
        return None
    return int(number) * (unit or 1)


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
    mfa: RateLimit  # second-step attempts, per user (across its mfa_tokens)


class LimitSettings(msgspec.Struct, frozen=True):
    login: Annotated[str, env("RATE_LIMIT_LOGIN", "Logins per client IP")] = "5/minute"
    api: Annotated[str, env("RATE_LIMIT_API", "Authenticated requests per user")] = "100/minute"
    refresh: Annotated[str, env("RATE_LIMIT_REFRESH", "Refreshes per session (refresh-token family)")] = "10/hour"
    login_failures: Annotated[str, env("RATE_LIMIT_LOGIN_FAILURES", "Failed logins per username")] = "10/15minute"
    public: Annotated[str, env("RATE_LIMIT_PUBLIC", "Requests per IP to endpoints without a limit of their own")] = (
        "300/minute"
    )
    email: Annotated[str, env("RATE_LIMIT_EMAIL", "Reset and verification mails per address")] = "3/hour"
    email_ip: Annotated[str, env("RATE_LIMIT_EMAIL_IP", "The same mails per client IP")] = "20/hour"
    verify: Annotated[str, env("RATE_LIMIT_VERIFY", "Verifies per user (empty: RATE_LIMIT_API)")] = ""
    mfa: Annotated[
        str,
        env(
            "RATE_LIMIT_MFA",
            "Second-step attempts (TOTP, recovery code, passkey) per user, across all its mfa_tokens",
        ),
    ] = "10/15minute"
    enabled: Annotated[bool, env("RATE_LIMIT_ENABLED", "Off: no limit anywhere (benchmarks)")] = True
    fail_open: Annotated[bool, env("RATE_LIMIT_FAIL_OPEN", "Redis down: let requests through (true) or 503")] = True

    @property
    def parsed(self) -> RateLimits:
        return RateLimits(
            login=RateLimit.parse(self.login),
            login_failures=RateLimit.parse(self.login_failures),
            refresh=RateLimit.parse(self.refresh),
            api=RateLimit.parse(self.api),
            verify=RateLimit.parse(self.verify or self.api),
            public=RateLimit.parse(self.public),
            email=RateLimit.parse(self.email),
            email_ip=RateLimit.parse(self.email_ip),
            mfa=RateLimit.parse(self.mfa),
        )

    def problems(self) -> Problems:
        problems: Problems = []
        for variable, value in (
            ("RATE_LIMIT_EMAIL", self.email),
            ("RATE_LIMIT_EMAIL_IP", self.email_ip),
            ("RATE_LIMIT_LOGIN", self.login),
            ("RATE_LIMIT_API", self.api),
            ("RATE_LIMIT_VERIFY", self.verify),
            ("RATE_LIMIT_REFRESH", self.refresh),
            ("RATE_LIMIT_LOGIN_FAILURES", self.login_failures),
            ("RATE_LIMIT_PUBLIC", self.public),
            ("RATE_LIMIT_MFA", self.mfa),
        ):
            if not value and variable == "RATE_LIMIT_VERIFY":
                continue  # RATE_LIMIT_VERIFY may be empty
            try:
                RateLimit.parse(value)
            except ValueError as exc:
                problems.append((variable, str(exc)))
        return problems


class PasswordSettings(msgspec.Struct, frozen=True):
    min_length: Annotated[int, env("PASSWORD_MIN_LENGTH", "Shortest password accepted (8-256 characters)")] = 12
    min_score: Annotated[int, env("PASSWORD_MIN_SCORE", "zxcvbn score needed, 0-4 (0: not scored)")] = 0
    hash_workers: Annotated[int, env("PASSWORD_HASH_WORKERS", "Threads that hash at once (0: one per usable CPU)")] = 0
    queue: Annotated[int, env("PASSWORD_HASH_QUEUE", "Password checks in flight before answering 503")] = 64
    memory_kib: Annotated[int, env("ARGON2_MEMORY_KIB", "argon2id memory cost (OWASP minimum 19456)")] = 19456
    time_cost: Annotated[int, env("ARGON2_TIME_COST", "argon2id iterations (OWASP minimum 2)")] = 2
    parallelism: Annotated[int, env("ARGON2_PARALLELISM", "argon2id lanes")] = 1

    @property
    def workers(self) -> int:
        """PASSWORD_HASH_WORKERS, or one per CPU this process may run on (taskset, cgroups)."""
        import os

        if self.hash_workers:
            return self.hash_workers
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return len(usable) if usable else os.cpu_count() or 1

    def problems(self) -> Problems:
        problems = positive("PASSWORD_HASH_QUEUE", self.queue)
        if not 8 <= self.min_length <= 256:
            problems.append(("PASSWORD_MIN_LENGTH", "must be between 8 and 256 characters"))
        if not 0 <= self.min_score <= 4:
            problems.append(("PASSWORD_MIN_SCORE", "must be a zxcvbn score from 0 (off) to 4"))
        if self.hash_workers < 0:
            problems.append(("PASSWORD_HASH_WORKERS", "must be 0 (one per CPU) or more"))
        # OWASP's argon2id minimum: m=19 MiB, t=2, p=1.
        if self.memory_kib < 19456 or self.time_cost < 2 or self.parallelism < 1:
            problems.append(("ARGON2_MEMORY_KIB", "argon2id below OWASP's minimum (m=19456 KiB, t=2, p=1) is refused"))
        return problems


class LinkSettings(msgspec.Struct, frozen=True):
    """How long each e-mailed link stays usable; every mail that states a lifetime reads it here."""

    password_reset_ttl_minutes: Annotated[int, env("PASSWORD_RESET_TTL_MINUTES", "A reset link's lifetime")] = 30
    email_verify_ttl_hours: Annotated[int, env("EMAIL_VERIFY_TTL_HOURS", "A verification link's lifetime")] = 48
    invitation_ttl_hours: Annotated[
        int, env("INVITATION_TTL_HOURS", "An invitation's (set-password link) lifetime")
    ] = 72
    not_me_link_ttl_hours: Annotated[int, env("NOT_ME_LINK_TTL_HOURS", "A \"this wasn't me\" link's lifetime")] = 72

    def problems(self) -> Problems:
        return [
            *positive("PASSWORD_RESET_TTL_MINUTES", self.password_reset_ttl_minutes),
            *positive("EMAIL_VERIFY_TTL_HOURS", self.email_verify_ttl_hours),
            *positive("INVITATION_TTL_HOURS", self.invitation_ttl_hours),
            *positive("NOT_ME_LINK_TTL_HOURS", self.not_me_link_ttl_hours),
        ]


class AccountSettings(msgspec.Struct, frozen=True):
    registration_enabled: Annotated[
        bool, env("REGISTRATION_ENABLED", "Self-registration (POST /auth/register); off: 404")
    ] = False
    require_verified_email: Annotated[
        bool,
        env("REGISTRATION_REQUIRE_VERIFIED_EMAIL", "A login needs a verified address (else 403 AUTH_EMAIL_UNVERIFIED)"),
    ] = True
    suspicious_new_device_days: Annotated[
        int, env("SUSPICIOUS_NEW_DEVICE_DAYS", "A login from an IP and agent unseen this many days is a new device")
    ] = 30
    suspicious_failures: Annotated[
        int, env("SUSPICIOUS_FAILURES", "Failed attempts before a success that make it suspicious")
    ] = 5
    suspicious_failure_window_minutes: Annotated[
        int, env("SUSPICIOUS_FAILURE_WINDOW_MINUTES", "The window those failures are counted in")
    ] = 15

    def problems(self) -> Problems:
        return [
            *positive("SUSPICIOUS_NEW_DEVICE_DAYS", self.suspicious_new_device_days),
            *positive("SUSPICIOUS_FAILURES", self.suspicious_failures),
            *positive("SUSPICIOUS_FAILURE_WINDOW_MINUTES", self.suspicious_failure_window_minutes),
        ]


class MailSettings(msgspec.Struct, frozen=True):
    backend: Annotated[
        Literal["file", "smtp", "console"], env("EMAIL_BACKEND", "file (.eml files), smtp, or console")
    ] = "file"
    outbox_dir: Annotated[str, env("EMAIL_OUTBOX_DIR", "Where the file backend writes")] = ".data/outbox"
    sender: Annotated[str, env("EMAIL_FROM", "The From: of every mail")] = "Auth Service <no-reply@localhost>"
    smtp_host: Annotated[str, env("SMTP_HOST", "SMTP server")] = "localhost"
    smtp_port: Annotated[int, env("SMTP_PORT", "SMTP port")] = 587
    smtp_username: Annotated[str, env("SMTP_USERNAME", "SMTP login (empty: none)")] = ""
    smtp_password: Annotated[str, env("SMTP_PASSWORD", "SMTP password")] = ""
    smtp_starttls: Annotated[bool, env("SMTP_STARTTLS", "STARTTLS after connecting")] = True
    smtp_tls: Annotated[bool, env("SMTP_TLS", "Implicit TLS (port 465); not with SMTP_STARTTLS")] = False
    smtp_timeout: Annotated[float, env("SMTP_TIMEOUT", "Seconds per SMTP operation")] = 10.0
    breaker_failures: Annotated[
        int, env("SMTP_BREAKER_FAILURES", "Failed sends in a row before the worker stops trying for a while")
    ] = 5
    breaker_reset_seconds: Annotated[float, env("SMTP_BREAKER_RESET_SECONDS", "How long it stops trying")] = 30.0

    def problems(self) -> Problems:
        problems: Problems = []
        if self.smtp_tls and self.smtp_starttls and self.backend == "smtp":
            problems.append(("SMTP_STARTTLS", "set SMTP_TLS (implicit TLS, port 465) or SMTP_STARTTLS, not both"))
        problems += positive("SMTP_BREAKER_FAILURES", self.breaker_failures)
        problems += positive_seconds("SMTP_TIMEOUT", self.smtp_timeout)
        problems += positive_seconds("SMTP_BREAKER_RESET_SECONDS", self.breaker_reset_seconds)
        problems += tcp_port("SMTP_PORT", self.smtp_port)
        return problems


class PageSettings(msgspec.Struct, frozen=True):
    docs_enabled: Annotated[
        bool, env("DOCS_ENABLED", "Serve /docs and the OpenAPI document (unset: off with APP_ENV=production)")
    ] = True

    def problems(self) -> Problems:
        return []
