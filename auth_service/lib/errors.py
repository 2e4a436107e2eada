"""The error hierarchy and the envelope every error leaves in.

Every error, ours or the framework's (validation, 404, 405, 413, 500), leaves as
`{"error": {"code", "message", "timestamp", "request_id", ["details"]}}`; the handlers
that build it are in server/exception_handlers.py. Domains raise subclasses of
AuthServiceError only, so nothing they raise can become a 500.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = [
    "AuthServiceError",
    "Conflict",
    "EmailUnverified",
    "ErrorBody",
    "ErrorDetail",
    "ErrorEnvelope",
    "Forbidden",
    "InvalidCredentials",
    "InvalidInput",
    "LinkInvalid",
    "MfaChallenge",
    "MfaInvalid",
    "MfaRequired",
    "NotFound",
    "RateLimited",
    "ServiceUnavailable",
    "TokenExpired",
    "TokenInvalid",
    "TokenRevoked",
]


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """One field that failed validation (`reason`: a code clients can act on, e.g. too_short)."""

    field: str
    message: str
    reason: str | None = None


class MfaChallenge(msgspec.Struct):
    """What an AUTH_MFA_REQUIRED answer asks for: the pending login's opaque token, the proofs it
    takes (`totp`, `recovery_code`, `webauthn`; `enroll`: enrol a factor first) and its lifetime."""

    mfa_token: str
    methods: list[str]
    expires_in: int


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    timestamp: str
    request_id: str
    details: list[ErrorDetail] | msgspec.UnsetType = msgspec.UNSET
    mfa: MfaChallenge | msgspec.UnsetType = msgspec.UNSET


class ErrorEnvelope(msgspec.Struct):
    """The body of every error response."""

    error: ErrorBody


class AuthServiceError(Exception):
    """Base of our errors: a stable code, a safe message and an HTTP status."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"
    status_code: ClassVar[int] = 500
    message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: list[ErrorDetail] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.detail = message or self.message
        self.headers = headers or {}
        self.details = details
        self.mfa: MfaChallenge | None = None


class InvalidInput(AuthServiceError):
    """A value a domain refused (a weak password, a malformed name): 400 with the field named."""

    code, status_code, message = "VALIDATION_ERROR", 400, "Request validation failed"

    def __init__(self, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(details=[ErrorDetail(field=field, message=message, reason=reason)])
        self.field, self.explanation, self.reason = field, message, reason

    def __str__(self) -> str:
        return self.explanation


class NotFound(AuthServiceError):
    code, status_code, message = "NOT_FOUND", 404, "Resource not found"


class EmailUnverified(AuthServiceError):
    """Right password, but the account's address is not verified (REGISTRATION_REQUIRE_VERIFIED_EMAIL)."""

    code, status_code, message = "AUTH_EMAIL_UNVERIFIED", 403, "Verify your e-mail address first"


class LinkInvalid(AuthServiceError):
    """A reset, verification or invitation token that is unknown, used or expired: one answer for all."""

    code, status_code, message = "LINK_INVALID", 400, "This link is invalid, used or expired"


class Conflict(AuthServiceError):
    """Username or e-mail already taken, or a change that would leave no active admin."""

    code, status_code, message = "CONFLICT", 409, "Conflict"


class InvalidCredentials(AuthServiceError):
    code, status_code, message = "AUTH_INVALID_CREDENTIALS", 401, "Invalid username or password"


class MfaRequired(AuthServiceError):
    """The password was right; a second factor (or its enrolment) must follow: `error.mfa`."""

    code, status_code, message = "AUTH_MFA_REQUIRED", 401, "A second factor is required"

    def __init__(self, challenge: MfaChallenge) -> None:
        super().__init__()
        self.mfa = challenge


class MfaInvalid(AuthServiceError):
    """A wrong, replayed or expired second-factor code, or an unknown, used or dead mfa_token."""

    code, status_code, message = "AUTH_MFA_INVALID", 401, "Invalid or expired second-factor code"


class TokenInvalid(AuthServiceError):
    code, status_code, message = "AUTH_TOKEN_INVALID", 401, "Token is invalid"


class TokenExpired(AuthServiceError):
    code, status_code, message = "AUTH_TOKEN_EXPIRED", 401, "Token has expired"


class TokenRevoked(AuthServiceError):
    code, status_code, message = "AUTH_TOKEN_REVOKED", 401, "Token has been revoked"


class Forbidden(AuthServiceError):
    code, status_code, message = "FORBIDDEN", 403, "Forbidden"


class RateLimited(AuthServiceError):
    code, status_code, message = "RATE_LIMIT_EXCEEDED", 429, "Too many requests, retry later"


class ServiceUnavailable(AuthServiceError):
    code, status_code, message = "SERVICE_UNAVAILABLE", 503, "Service temporarily unavailable, retry shortly"
