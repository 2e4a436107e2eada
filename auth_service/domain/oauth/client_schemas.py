"""Wire types of the OAuth client registry (the admin API's bodies and answers, the CLI's JSON).

The constraints a single value can be checked against live here, as msgspec `Meta`, so the API
document states them; the rules across fields and the meaning of a redirect URI are
client_rules.py's, which also re-checks everything here (a Struct built in Python skips `Meta`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from auth_service.lib.http import strict_body

__all__ = [
    "CLIENT_ID_PATTERN",
    "CLIENT_TYPES",
    "DEFAULT_GRANT_TYPES",
    "DEFAULT_SCOPES",
    "GRANT_TYPES",
    "MAX_REDIRECT_URIS",
    "MAX_SCOPES",
    "NAME_PATTERN",
    "REDIRECT_URI_PATTERN",
    "SCOPE_PATTERN",
    "ClientCreate",
    "ClientCreated",
    "ClientPage",
    "ClientPatch",
    "ClientRead",
    "ClientType",
    "GrantType",
]

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CLIENT_TYPES = ("confidential", "public")
DEFAULT_GRANT_TYPES = ("authorization_code", "refresh_token")
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
MAX_REDIRECT_URIS = 20
MAX_SCOPES = 32
MAX_NAME = 128
MAX_URI = 2000

GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
ClientType = Literal["confidential", "public"]

# Characters that never belong in a name a consent page shows: C0/C1 controls (NUL: PostgreSQL
# refuses it, a 400 here rather than a 500 there), bidi controls (a name could otherwise render
# reversed), zero-width characters and line separators. `$(?!\n)`: msgspec matches with
# re.search, where `$` also matches before a final newline. Linear (no nested repeats).
_HIDDEN = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
NAME_PATTERN = rf"^ *[^{_HIDDEN} ][^{_HIDDEN}]*$(?!\n)"
SCOPE_PATTERN = r"^[a-z][a-z0-9_.:-]{0,63}$(?!\n)"
# An absolute URI of RFC 3986's characters with valid percent-escapes and no fragment (`#`).
# What its scheme and host may be is client_rules.py's (it depends on the client's type).
REDIRECT_URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$(?!\n)"
# What `secrets.token_urlsafe` makes (the path's id is checked against it only for the cursor).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$(?!\n)"

ClientName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME,
        pattern=NAME_PATTERN,
        description="1-128 printable characters (no control, bidi or zero-width characters), shown on the consent page",
    ),
]
RedirectUri = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=MAX_URI,
        pattern=REDIRECT_URI_PATTERN,
        description="Absolute, at most 2000 characters, no fragment, no user info: scheme https, or http only "
        "for a loopback host (127.0.0.1, [::1], localhost), or for a public (native) client a private-use "
        "scheme such as com.example.app:/cb (RFC 8252). Compared character for character.",
    ),
]
RedirectUris = Annotated[
    list[RedirectUri],
    msgspec.Meta(
        max_length=MAX_REDIRECT_URIS,
        description="At most 20, each absolute with no fragment or user info: scheme https, http on a loopback "
        "host, or (public clients) a private-use scheme such as com.example.app:/cb; compared exactly",
    ),
]
GrantTypes = Annotated[
    list[GrantType],
    msgspec.Meta(
        min_length=1,
        max_length=len(GRANT_TYPES),
        description="refresh_token needs authorization_code; a public client cannot have client_credentials",
    ),
]
Scope = Annotated[str, msgspec.Meta(pattern=SCOPE_PATTERN, description="A scope name, e.g. openid")]
Scopes = Annotated[list[Scope], msgspec.Meta(max_length=MAX_SCOPES, description="Scopes the client may ask for")]


def _default_grants() -> list[GrantType]:
    return list(DEFAULT_GRANT_TYPES)  # type: ignore[arg-type]


def _default_scopes() -> list[str]:
    return list(DEFAULT_SCOPES)


@strict_body
class ClientCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A client to register. With `authorization_code` (the default) at least one redirect URI."""

    name: ClientName
    redirect_uris: RedirectUris = msgspec.field(default_factory=list)
    post_logout_redirect_uris: RedirectUris = msgspec.field(default_factory=list)
    grant_types: GrantTypes = msgspec.field(default_factory=_default_grants)
    scopes: Scopes = msgspec.field(default_factory=_default_scopes)
    type: ClientType = "confidential"
    first_party: bool = False


@strict_body
class ClientPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the fields given change; the result must pass the same rules as a new client.
    Deactivating (`is_active: false`) ends every session opened through the client."""

    name: ClientName | msgspec.UnsetType = msgspec.UNSET
    redirect_uris: RedirectUris | msgspec.UnsetType = msgspec.UNSET
    post_logout_redirect_uris: RedirectUris | msgspec.UnsetType = msgspec.UNSET
    grant_types: GrantTypes | msgspec.UnsetType = msgspec.UNSET
    scopes: Scopes | msgspec.UnsetType = msgspec.UNSET
    first_party: bool | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


class ClientRead(msgspec.Struct, kw_only=True):
    """A registered client as the admin sees it (never its secret or the secret's hash)."""

    client_id: str
    name: str
    type: ClientType
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    first_party: bool
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ClientCreated(msgspec.Struct, kw_only=True):
    """A new client, or one whose secret was just replaced: a confidential client's
    `client_secret` is shown here once and never again (only its SHA-256 is kept); a public
    client has none (the key is absent)."""

    client_id: str
    client_secret: str | msgspec.UnsetType = msgspec.UNSET
    name: str
    type: ClientType
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    first_party: bool
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ClientPage(msgspec.Struct):
    items: list[ClientRead]
    next_cursor: str | None
