"""Wire types of the auth endpoints; their constraints are the validation and the OpenAPI text."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["LoginRequest", "LogoutRequest", "RefreshRequest", "TokenPair", "VerifyResponse"]

# No NUL (or other C0 control) characters anywhere in text input.
_NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"

Username = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=_NO_CONTROL, description="Username (case-insensitive)")
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=_NO_CONTROL, description="Password")]
OpaqueToken = Annotated[
    str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.-]+$", description="Opaque refresh token")
]


class LoginRequest(msgspec.Struct):
    username: Username
    password: Password


class RefreshRequest(msgspec.Struct):
    refresh_token: OpaqueToken


class LogoutRequest(msgspec.Struct):
    refresh_token: OpaqueToken | None = None
    everywhere: Annotated[bool, msgspec.Meta(description="Revoke every session of the user")] = False


class TokenPair(msgspec.Struct, kw_only=True):
    """A fresh access token and the refresh token that replaces the previous one."""

    access_token: str
    token_type: str = "bearer"
    expires_in: Annotated[int, msgspec.Meta(description="Access token lifetime in seconds")]
    refresh_token: str
    refresh_expires_in: Annotated[int, msgspec.Meta(description="Refresh token lifetime in seconds")]


class VerifyResponse(msgspec.Struct):
    valid: bool
    user_id: str
    username: str
    roles: list[str]
    expires_at: Annotated[str, msgspec.Meta(description="ISO 8601 UTC, e.g. 2026-11-28T11:30:00Z")]
