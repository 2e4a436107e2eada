"""The one place that turns any error into the envelope (lib/errors.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from advanced_alchemy.exceptions import NotFoundError, RepositoryError
from asyncpg.exceptions import InsufficientResourcesError, OperatorInterventionError, PostgresConnectionError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from auth_service.lib.crypto.passwords import HasherBusyError
from auth_service.lib.errors import (
    AuthServiceError,
    ErrorBody,
    ErrorDetail,
    ErrorEnvelope,
    MfaChallenge,
    ServiceUnavailable,
)
from auth_service.server.request_context import request_id_of
from observability import metrics

__all__ = ["exception_handler_for", "exception_handlers", "is_database_unreachable"]

log = structlog.get_logger()


# Framework statuses we answer with our own codes and fixed, non-revealing messages.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("VALIDATION_ERROR", "Request validation failed"),
    401: ("AUTH_TOKEN_INVALID", "Token is invalid"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Resource not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    413: ("PAYLOAD_TOO_LARGE", "Request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"),
    429: ("RATE_LIMIT_EXCEEDED", "Too many requests"),
    500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable, retry shortly"),
}

_AUTH_STATUSES = {401}


def _envelope(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    *,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    mfa: MfaChallenge | None = None,
) -> Response[ErrorEnvelope]:
    body = ErrorBody(
        code=code,
        message=message,
        timestamp=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        request_id=request_id_of(request.scope),
        details=details if details is not None else msgspec.UNSET,
        mfa=mfa if mfa is not None else msgspec.UNSET,
    )
    all_headers = dict(headers or {})
    if status in _AUTH_STATUSES:
        all_headers.setdefault("WWW-Authenticate", "Bearer")
    return Response(ErrorEnvelope(error=body), status_code=status, headers=all_headers)


def _handle_ours(request: Request[Any, Any, Any], exc: AuthServiceError) -> Response[ErrorEnvelope]:
    return _envelope(
        request, exc.status_code, exc.code, exc.detail, headers=exc.headers, details=exc.details, mfa=exc.mfa
    )


def _field_message(field: str, message: str) -> ErrorDetail:
    field = field.removeprefix("$.")
    if field == "data":  # Litestar's name for the whole body
        field = "body"
    if message == "'data'":
        message = "a JSON body is required"
    elif "matching regex" in message:
        # Don't echo our patterns back; say what they forbid.
        message = "contains characters that are not allowed"
    return ErrorDetail(field=field, message=message[:200])


def _validation_details(exc: ValidationException) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            field = str(item.get("key") or item.get("source") or "body")
            details.append(_field_message(field, str(item.get("message", "invalid"))))
    return details or [ErrorDetail(field="body", message=_safe_detail(exc))]


def _safe_detail(exc: HTTPException) -> str:
    detail = str(exc.detail or "")
    # Litestar's own 400 texts name the problem ("Malformed request"); keep them short and plain.
    return detail[:200] if detail else "invalid request"


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorEnvelope]:
    status = exc.status_code
    code, message = _HTTP_CODES.get(status, ("INTERNAL_SERVER_ERROR" if status >= 500 else "VALIDATION_ERROR", ""))
    if status >= 500:
        log.error("request.failed", status=status, exc_info=exc)
        return _envelope(request, status, code, message or "Internal server error")
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")}
    if status == 400:
        details = (
            _validation_details(exc)
            if isinstance(exc, ValidationException)
            else [ErrorDetail(field="body", message=_safe_detail(exc))]
        )
        return _envelope(request, 400, code, message, details=details, headers=headers)
    return _envelope(request, status, code, message or _safe_detail(exc), headers=headers)


# Failures of the database, not of our code: unreachable, dropped connection, shutting down or
# starting up (SQLSTATE 57P01-03), statement timeout (57014), out of connections (53300).
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    ConnectionError,
    PoolTimeoutError,  # every pooled connection stayed busy for DATABASE_POOL_TIMEOUT
    OperationalError,
    InterfaceError,
    PostgresConnectionError,
    OperatorInterventionError,
    InsufficientResourcesError,
)


def is_database_unreachable(exc: BaseException) -> bool:
    """PostgreSQL could not be reached, dropped the connection or refused work (as opposed to a bug).

    Walks the whole chain: SQLAlchemy wraps the driver's error, and Advanced Alchemy's
    repositories wrap SQLAlchemy's (a lost connection arrives as its `IntegrityError`).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _UNAVAILABLE):
            return True
        pending += [getattr(current, "orig", None), current.__cause__]
    return False


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    if is_database_unreachable(exc):
        metrics.db_connection_errors.add(1, {"source": "request"})
        log.error("request.database_unreachable", error=type(exc).__name__)
        return _envelope(
            request, 503, ServiceUnavailable.code, ServiceUnavailable.message, headers={"Retry-After": "5"}
        )
    if isinstance(exc, NotFoundError):
        return _envelope(request, 404, *_HTTP_CODES[404])
    log.error("request.unhandled_exception", exc_info=exc)
    return _envelope(request, HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "Internal server error")


def _handle_hasher_busy(request: Request[Any, Any, Any], exc: HasherBusyError) -> Response[ErrorEnvelope]:
    """The bounded hashing pool is full: saturation, not a bug. Answered here, once, for every
    endpoint that hashes (login, admin create, registration, reset, password change)."""
    return _envelope(request, 503, ServiceUnavailable.code, ServiceUnavailable.message, headers={"Retry-After": "1"})


def _handle_bad_encoding(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[ErrorEnvelope]:
    """A body that is not UTF-8 (JSON is UTF-8 only, RFC 8259; a `charset=latin-1` changes nothing)."""
    details = [ErrorDetail(field="body", message="must be JSON encoded as UTF-8")]
    return _envelope(request, 400, *_HTTP_CODES[400], details=details)


exception_handlers: dict[type[Exception] | int, Any] = {
    AuthServiceError: _handle_ours,
    UnicodeDecodeError: _handle_bad_encoding,
    HasherBusyError: _handle_hasher_busy,
    HTTPException: _handle_http,
    # Advanced Alchemy's repository errors, here so its plugin does not install its own handler
    # (which answered a lost connection with 409 Conflict, outside the envelope).
    RepositoryError: _handle_unexpected,
    Exception: _handle_unexpected,
}


def exception_handler_for(exc: Exception) -> Callable[[Request[Any, Any, Any], Any], Response[ErrorEnvelope]]:
    """The handler above for this exception (nearest class first), for code that answers
    outside Litestar's exception middleware (the verify fast path)."""
    for cls in type(exc).__mro__:
        handler = exception_handlers.get(cls)
        if handler is not None:
            return handler  # type: ignore[no-any-return]
    return _handle_unexpected
