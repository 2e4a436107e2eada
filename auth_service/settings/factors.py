"""The group of second factors: who must have one, the second step's token, TOTP's issuer and
the passkeys' relying party (its id and origins default from PUBLIC_BASE_URL)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from auth_service.settings.declare import Problems, env, host_problem, positive
from auth_service.settings.infra import AppSettings

__all__ = ["MfaSettings"]


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
