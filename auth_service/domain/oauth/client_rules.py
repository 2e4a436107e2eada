"""What a registered client may be: pure checks, one refusal naming the field (InvalidInput, the
envelope's VALIDATION_ERROR with `details[0].field` such as `redirect_uris[1]` and a `reason`).

Redirect URIs follow OAuth 2.1 and RFC 8252 (native apps):

- absolute, at most 2000 characters of RFC 3986, no fragment, no user info;
- `https://` with a host; `http://` only for a loopback host (127.0.0.1, [::1], localhost), the
  native app's local listener (any port: the provider compares the rest exactly);
- for a public (native) client also a private-use scheme, a reversed domain name such as
  `com.example.app:/cb` (the dot keeps out `javascript:`, `data:`, `file:` and the like);
- stored exactly as given: the provider compares character for character, so nothing is
  normalised here (a trailing slash or an upper-case host is another URI).

The same rules hold for post-logout redirect URIs. Lists lose repeated entries (first kept).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from auth_service.domain.oauth.client_schemas import (
    CLIENT_TYPES,
    GRANT_TYPES,
    MAX_NAME,
    MAX_REDIRECT_URIS,
    MAX_SCOPES,
    MAX_URI,
    NAME_PATTERN,
    REDIRECT_URI_PATTERN,
    SCOPE_PATTERN,
)
from auth_service.lib.errors import InvalidInput

__all__ = ["ClientSpec", "check_client", "check_redirect_uri", "field_of"]

_NAME = re.compile(NAME_PATTERN)
_SCOPE = re.compile(SCOPE_PATTERN)
_URI = re.compile(REDIRECT_URI_PATTERN)
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+-]*(?:\.[a-z0-9+-]+)+$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class ClientSpec(msgspec.Struct, frozen=True):
    """A client's checked settings, as they are stored."""

    name: str
    client_type: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _list(field: str, values: Any, limit: int) -> tuple[str, ...]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(field, "a list of strings", reason="invalid")
    if len(values) > limit:
        raise InvalidInput(field, f"at most {limit} entries", reason="too_many")
    return _unique(values)


def check_redirect_uri(field: str, uri: str, *, public: bool) -> None:
    """Refuse a redirect URI the client's type may not use (see the module docstring).

    Raises:
        InvalidInput: naming `field` and the rule, with a reason code.
    """
    if len(uri) > MAX_URI:
        raise InvalidInput(field, f"at most {MAX_URI} characters", reason="too_long")
    if "#" in uri:
        raise InvalidInput(field, "a redirect URI has no fragment (#…)", reason="fragment")
    if not _URI.search(uri):
        raise InvalidInput(
            field,
            "not an absolute URI (scheme:…, RFC 3986 characters only, percent-encode the rest)",
            reason="not_absolute",
        )
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unclosed [IPv6] host
        raise InvalidInput(field, "not a valid host", reason="no_host") from None
    scheme = uri.split(":", 1)[0]
    if scheme.lower() in ("https", "http"):
        if not uri[len(scheme) + 1 :].startswith("//") or not parts.netloc:
            raise InvalidInput(field, f"{scheme}:// needs a host", reason="no_host")
        if "@" in parts.netloc:
            raise InvalidInput(field, "a redirect URI carries no user info (user@host)", reason="userinfo")
        host = _host(field, parts.netloc)
        if scheme.lower() == "http" and host.lower() not in _LOOPBACK:
            raise InvalidInput(
                field,
                "http:// only for a loopback host (127.0.0.1, [::1], localhost); use https://",
                reason="insecure",
            )
        return
    if not _PRIVATE_SCHEME.fullmatch(scheme):
        raise InvalidInput(
            field,
            "use https://, http:// on a loopback host, or (public clients) a private-use scheme such as "
            "com.example.app:/cb",
            reason="scheme",
        )
    if not public:
        raise InvalidInput(field, "a private-use scheme is for public (native) clients; use https://", reason="scheme")
    if parts.netloc and "@" in parts.netloc:
        raise InvalidInput(field, "a redirect URI carries no user info (user@host)", reason="userinfo")


def _host(field: str, netloc: str) -> str:
    """The host of an authority (its port checked), or a refusal."""
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end] if end > 0 else "", netloc[end + 1 :] if end > 0 else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidInput(field, "not a valid IPv6 host", reason="no_host") from None
        if rest and not rest.startswith(":"):
            raise InvalidInput(field, "not a valid host", reason="no_host")
        port = rest[1:]
    else:
        host, _, port = netloc.partition(":")
        if not _HOST.fullmatch(host):
            raise InvalidInput(field, "not a valid host name or address", reason="no_host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise InvalidInput(field, "the port is 1-65535", reason="no_host")
    return host


def _utf8(value: str) -> bool:
    """Encodable: JSON bodies always are (msgspec refuses lone surrogates), a command line's
    argument may not be (undecodable bytes arrive as surrogate escapes)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or not _NAME.search(name) or not _utf8(name):
        raise InvalidInput(
            "name",
            f"1-{MAX_NAME} printable characters (no control, bidi or zero-width characters)",
            reason="invalid",
        )
    return name


def check_client(
    *,
    name: Any,
    client_type: Any,
    redirect_uris: Any,
    post_logout_redirect_uris: Any,
    grant_types: Any,
    scopes: Any,
) -> ClientSpec:
    """The whole client checked: each value, then the rules across fields.

    Raises:
        InvalidInput: the first rule broken, naming its field.
    """
    checked_name = _name(name)
    if client_type not in CLIENT_TYPES:
        raise InvalidInput("type", "confidential or public", reason="invalid")
    public = client_type == "public"
    grants = _list("grant_types", grant_types, len(GRANT_TYPES))
    unknown = [g for g in grants if g not in GRANT_TYPES]
    if unknown or not grants:
        raise InvalidInput("grant_types", f"one or more of {', '.join(GRANT_TYPES)}", reason="invalid")
    if public and "client_credentials" in grants:
        raise InvalidInput(
            "grant_types", "a public client has no secret, so no client_credentials", reason="public_client"
        )
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise InvalidInput("grant_types", "refresh_token needs authorization_code", reason="needs_authorization_code")
    uris: dict[str, tuple[str, ...]] = {}
    for field in ("redirect_uris", "post_logout_redirect_uris"):
        value = redirect_uris if field == "redirect_uris" else post_logout_redirect_uris
        uris[field] = _list(field, value, MAX_REDIRECT_URIS)
        for index, uri in enumerate(uris[field]):
            check_redirect_uri(f"{field}[{index}]", uri, public=public)
    if "authorization_code" in grants and not uris["redirect_uris"]:
        raise InvalidInput("redirect_uris", "authorization_code needs at least one redirect URI", reason="required")
    checked_scopes = _list("scopes", scopes, MAX_SCOPES)
    for index, scope in enumerate(checked_scopes):
        if not _SCOPE.search(scope):
            raise InvalidInput(
                f"scopes[{index}]",
                "a scope is a lowercase letter, then up to 63 of a-z 0-9 _ . : -",
                reason="invalid",
            )
    return ClientSpec(
        checked_name,
        client_type,
        uris["redirect_uris"],
        uris["post_logout_redirect_uris"],
        grants,
        checked_scopes,
    )


def field_of(exc: msgspec.ValidationError) -> str:
    """The field a msgspec refusal names (`$.redirect_uris[0]` → `redirect_uris[0]`), or `body`."""
    match = re.search(r"at `\$\.([\w\[\]]+)`", str(exc))
    return match.group(1) if match else "body"
