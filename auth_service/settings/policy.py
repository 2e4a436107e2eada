"""The groups of what the service decides: tokens and keys, rate limits, passwords, account
links and accounts, second factors, mail, and pages."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from auth_service.lib.redis.ratelimit import RateLimit
from auth_service.settings.declare import (
    MIN_SECRET_BYTES,
    WELL_KNOWN_SECRETS,
    Problems,
    env,
    host_problem,
    positive,
    positive_seconds,
    tcp_port,
)
from auth_service.settings.infra import AppSettings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "AccountSettings",
    "KeySettings",
    "LimitSettings",
    "LinkSettings",
    "MailSettings",
    "MfaSettings",
    "PageSettings",
    "PasswordSettings",
    "RateLimits",
    "TokenSettings",
]

SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


def _secret_problem(variable: str, secret: str) -> Problems:
    if secret.strip().lower() in WELL_KNOWN_SECRETS:
        return [(variable, "is a well-known example value; generate a random one")]
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return [(variable, f"must be at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32`)")]
    return []


class TokenSettings(msgspec.Struct, frozen=True):
    algorithm: Annotated[
        str, env("JWT_ALGORITHM", "HS256/384/512, or RS*/PS256/ES256/ES384/EdDSA with JWT_PRIVATE_KEY_FILE")
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
    def signing_material(self) -> bytes:
        """The JWT key's bytes (the secret, or the private key): the purpose keys' source until
        SECRET_KEY is set."""
        if self.algorithm in SYMMETRIC_ALGORITHMS:
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

    def problems(self, tokens: TokenSettings) -> Problems:
        if not self.secret_key:
            return []
        if problems := _secret_problem("SECRET_KEY", self.secret_key):
            return problems
        if self.secret_key == tokens.secret:
            return [("SECRET_KEY", "must differ from JWT_SECRET_KEY (rotating one must not change the other)")]
        return []


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


_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # a role as the admin API accepts one


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _origin(url: str) -> str | None:
    """The web origin of an http(s) URL (scheme://host[:port], the default port left out, as a
    browser writes it in clientDataJSON), or None when `url` is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _is_origin(text: str) -> bool:
    """An origin as an operator may write one: http(s)://host[:port], a trailing slash at most."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return (
        _origin(text) is not None
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or "@" in parts.netloc)
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _within(origin: str, rp_id: str) -> bool:
    """Whether a browser at `origin` may use `rp_id` (its host is the RP id or under it)."""
    host = (urlsplit(origin).hostname or "").lower()
    return host == rp_id or host.endswith("." + rp_id)


class MfaSettings(msgspec.Struct, frozen=True):
    """Second factors: who must have one, the login's second step, TOTP and passkeys.

    `load_settings` resolves the WebAuthn defaults from the app's URL (`resolved`): read
    `rp_id`, `origins` and `rp_name`, not the raw fields.
    """

    required_roles: Annotated[
        str,
        env(
            "MFA_REQUIRED_ROLES",
            "Comma-separated roles (e.g. admin) whose users must enrol a second factor before a login completes",
        ),
    ] = ""
    token_ttl_seconds: Annotated[
        int, env("MFA_TOKEN_TTL_SECONDS", "Lifetime of the mfa_token between a right password and the second step")
    ] = 300
    max_attempts: Annotated[int, env("MFA_MAX_ATTEMPTS", "Wrong second-step answers one mfa_token allows")] = 5
    totp_issuer: Annotated[
        str, env("TOTP_ISSUER", "The issuer an authenticator app shows next to the account's codes")
    ] = "Auth Service"
    webauthn_rp_id: Annotated[
        str,
        env(
            "WEBAUTHN_RP_ID",
            "The passkeys' relying party id, a domain (passkeys are bound to it for good); "
            "empty: PUBLIC_BASE_URL's host, else localhost",
        ),
    ] = ""
    webauthn_origins: Annotated[
        str,
        env(
            "WEBAUTHN_ORIGINS",
            "Comma-separated origins passkey ceremonies may come from, each the RP id or under it; "
            "empty: PUBLIC_BASE_URL's origin (else http://localhost:PORT)",
        ),
    ] = ""
    webauthn_rp_name: Annotated[
        str, env("WEBAUTHN_RP_NAME", "The name a browser shows when it creates a passkey (empty: TOTP_ISSUER)")
    ] = ""

    @property
    def required_role_set(self) -> frozenset[str]:
        return frozenset(_split(self.required_roles))

    @property
    def rp_id(self) -> str:
        return self.webauthn_rp_id.strip().lower() or "localhost"

    @property
    def origins(self) -> list[str]:
        """Every origin accepted in a ceremony, in the form browsers write them."""
        return [_origin(item) or item for item in _split(self.webauthn_origins)]

    @property
    def rp_name(self) -> str:
        return self.webauthn_rp_name.strip() or self.totp_issuer

    def resolved(self, app: AppSettings) -> MfaSettings:
        """These settings with the WebAuthn defaults filled in from the app's URL: the host and
        origin of PUBLIC_BASE_URL, else localhost and http(s)://localhost:PORT (where a browser on
        the machine reaches `api`); an IP address cannot be an RP id, so one in PUBLIC_BASE_URL
        becomes localhost with the URL's scheme and port."""
        listening = f"{'https' if app.tls_cert_file else 'http'}://localhost:{app.port}"
        base: str = (_origin(app.public_base_url) if app.public_base_url else None) or listening
        parts = urlsplit(base)
        host = parts.hostname or "localhost"
        if _is_ip(host):  # the same scheme and port on localhost (a browser on that machine)
            host = "localhost"
            base = f"{parts.scheme}://localhost" + (f":{parts.port}" if parts.port else "")
        rp_id = self.webauthn_rp_id or host
        origins = self.webauthn_origins or base
        return msgspec.structs.replace(self, webauthn_rp_id=rp_id, webauthn_origins=origins)

    def problems(self, app: AppSettings) -> Problems:
        problems: Problems = []
        for role in _split(self.required_roles):
            if not _ROLE.fullmatch(role):
                problems.append(("MFA_REQUIRED_ROLES", f"{role[:40]!r} is not a role name (lowercase, e.g. admin)"))
        problems += positive("MFA_TOKEN_TTL_SECONDS", self.token_ttl_seconds)
        if self.token_ttl_seconds > 3600:
            problems.append(("MFA_TOKEN_TTL_SECONDS", "must be at most 3600 (the second step follows the password)"))
        problems += positive("MFA_MAX_ATTEMPTS", self.max_attempts)
        if not self.totp_issuer.strip() or ":" in self.totp_issuer:
            problems.append(("TOTP_ISSUER", "must be a non-empty name without ':' (the otpauth label's separator)"))
        rp_id = self.webauthn_rp_id.strip().lower()
        if rp_id and (_is_ip(rp_id) or host_problem(rp_id) is not None):
            problems.append(("WEBAUTHN_RP_ID", f"{rp_id[:60]!r} must be a domain name (not an IP address, no scheme)"))
            return problems
        malformed = [item for item in _split(self.webauthn_origins) if not _is_origin(item)]
        if malformed:
            words = "expected comma-separated origins such as https://auth.example.com (no path)"
            problems.append(("WEBAUTHN_ORIGINS", f"{words}, got {malformed[0][:60]!r}"))
            return problems
        resolved = self.resolved(app)
        outside = [origin for origin in resolved.origins if not _within(origin, resolved.rp_id)]
        if outside:
            words = "browsers refuse passkeys there (set WEBAUTHN_ORIGINS, or PUBLIC_BASE_URL)"
            problems.append(("WEBAUTHN_ORIGINS", f"{outside[0][:60]} is not {resolved.rp_id} or under it: {words}"))
        return problems


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
