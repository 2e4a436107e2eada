"""Wire types of the auth endpoints; their constraints are the validation and the OpenAPI text."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from auth_service.domain.users import schemas as users
from auth_service.domain.users.schemas import NewPassword
from auth_service.lib.crypto.account_links import TOKEN_MAX_LENGTH
from auth_service.lib.http import one_of_fields, strict_body

__all__ = [
    "EmailChangeRequest",
    "LoginRequest",
    "LogoutRequest",
    "MfaCode",
    "MfaRequest",
    "MfaToken",
    "MfaWebAuthnOptions",
    "MfaWebAuthnOptionsRequest",
    "PasskeyCredential",
    "PasswordChangeRequest",
    "PasswordResetConfirm",
    "PasswordResetRequest",
    "RecoveryCode",
    "RefreshRequest",
    "RegisterRequest",
    "RegistrationAccepted",
    "TokenPair",
    "VerifyEmailRequest",
    "VerifyResponse",
]

# No NUL (or other C0 control) characters anywhere in text input.
_NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"

Username = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=_NO_CONTROL, description="Username (case-insensitive)")
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=_NO_CONTROL, description="Password")]
OpaqueToken = Annotated[
    str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.-]+$", description="Opaque refresh token")
]


Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=255, pattern=_NO_CONTROL, description="The account's e-mail address")
]
# Any string: whatever is not a live link (malformed, 10 KB, NUL bytes, used, expired) is the one
# answer 400 LINK_INVALID, not a validation error that would tell a malformed token from a dead one.
AccountLinkToken = Annotated[
    str, msgspec.Meta(description=f"The `token` of the e-mailed link ({TOKEN_MAX_LENGTH} characters)")
]


@strict_body
class PasswordChangeRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: NewPassword


@strict_body
class EmailChangeRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: users.Email  # the account's rule, not only "no control characters"
    current_password: Password


@strict_body
class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    # The account's own rules (what registration applies), so the document says what is accepted.
    username: users.Username
    email: users.Email
    password: NewPassword


@strict_body
class VerifyEmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: AccountLinkToken


class RegistrationAccepted(msgspec.Struct):
    status: str


@strict_body
class PasswordResetRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


@strict_body
class PasswordResetConfirm(msgspec.Struct, forbid_unknown_fields=True):
    token: AccountLinkToken
    new_password: NewPassword


MfaToken = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="`error.mfa.mfa_token` of the login"
    ),
]
# Any digits and spaces: a code of the wrong length is a wrong code (401), like a wrong one.
MfaCode = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=16, pattern=r"^[0-9 ]+$", description="The authenticator app's 6-digit code"),
]
RecoveryCode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9 -]+$",
        description="One of the recovery codes shown at enrolment (`xxxx-xxxx-xx`; case and dashes ignored)",
    ),
]


PasskeyCredential = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="The browser's `PublicKeyCredential.toJSON()` (id, rawId, type, response, clientExtensionResults)"
    ),
]


@one_of_fields("code", "recovery_code", "webauthn", always=("mfa_token",))
@strict_body
class MfaRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The second step of a login: its `mfa_token` and exactly one proof."""

    mfa_token: MfaToken
    code: MfaCode | msgspec.UnsetType = msgspec.UNSET
    recovery_code: RecoveryCode | msgspec.UnsetType = msgspec.UNSET
    # An assertion answering POST /auth/mfa/webauthn/options for the same token.
    webauthn: PasskeyCredential | msgspec.UnsetType = msgspec.UNSET


@strict_body
class MfaWebAuthnOptionsRequest(msgspec.Struct, forbid_unknown_fields=True):
    mfa_token: MfaToken


class MfaWebAuthnOptions(msgspec.Struct):
    public_key: Annotated[
        dict[str, Any],
        msgspec.Meta(description="PublicKeyCredentialRequestOptionsJSON for `navigator.credentials.get()`"),
    ]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the challenge lives (single use)")]


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
    amr: Annotated[
        list[str],
        msgspec.Meta(description='How the login was proven (RFC 8176): ["pwd"], or ["pwd", "otp", "mfa"] with TOTP'),
    ] = msgspec.field(default_factory=lambda: ["pwd"])
