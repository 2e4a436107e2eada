"""What every domain's controllers share: the error responses they document (declared once per
controller, `ApiController`), the JSON-body guard, and the refusal of tokens in URLs."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs

import msgspec
from litestar import Controller, Request
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.types import Empty, Scope

from auth_service.lib.errors import ErrorEnvelope, TokenInvalid

__all__ = [
    "ACCEPTS_MFA_TOKEN",
    "AUTH",
    "BEARER",
    "BEARER_SECURITY",
    "ERRORS",
    "ONE_OF_BODIES",
    "OPTIONAL_BODY",
    "QUERY_TOKEN_PARAMETER",
    "STRICT_BODIES",
    "ApiController",
    "StrictJSONRequest",
    "error_responses",
    "one_of_fields",
    "refuse_query_tokens",
    "require_json_body",
    "strict_body",
]

# Request bodies that refuse unknown fields (msgspec's forbid_unknown_fields): Litestar's document
# does not say so, the app's does (server/openapi.py sets additionalProperties: false on them).
# Keyed by the component's name (the class name).
STRICT_BODIES: dict[str, type] = {}
T = TypeVar("T", bound=type)


def strict_body(cls: T) -> T:
    """Register a `forbid_unknown_fields` request Struct, so the API document says so."""
    STRICT_BODIES[cls.__name__] = cls
    return cls


# A handler's opt key: its JSON body may be left out. Litestar documents every request body as
# required; the app's OpenAPI document says otherwise for these (server/openapi.py).
OPTIONAL_BODY = "optional_body"

QUERY_TOKEN_PARAMETER = "access_token"

_DESCRIPTIONS = {
    400: "VALIDATION_ERROR: the body or a parameter is malformed; `details` lists the fields",
    401: "AUTH_INVALID_CREDENTIALS, AUTH_TOKEN_INVALID, AUTH_TOKEN_EXPIRED, AUTH_TOKEN_REVOKED, "
    "AUTH_MFA_REQUIRED (with `mfa`: the second step's token and methods) or AUTH_MFA_INVALID",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT: the username or e-mail address is taken, or the change would leave no active admin",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE: the body is over the limit (64 KiB by default)",
    415: "UNSUPPORTED_MEDIA_TYPE: send Content-Type: application/json",
    429: "RATE_LIMIT_EXCEEDED: see Retry-After",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE: a dependency is down or the service is saturated; retry",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The error envelope, declared for each status an operation can return (500 always)."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description=_DESCRIPTIONS[status], generate_examples=False)
        for status in (*statuses, 500)
    }


# A layer's opt key: the statuses a handler can answer beyond its controller's `errors`.
ERRORS = "errors"
# A layer's opt key: the requests of that route must be authenticated, and how (lib/principal.py).
AUTH = "auth"
BEARER = "bearer"
# A handler's opt key: besides an access token, the route takes the `mfa_token` of a login that
# must enrol a second factor first (MFA_REQUIRED_ROLES), as `Authorization: Bearer <mfa_token>`:
# the enrolment endpoints (TOTP, passkeys) only. The subject's `how` is then "mfa_token".
ACCEPTS_MFA_TOKEN = "accepts_mfa_token"
# Request bodies that take exactly one of some fields (beside fields they always take): msgspec
# decodes them as one Struct with optional fields and the service refuses anything but one; the
# API document says the same as a `oneOf` of the alternatives (server/openapi.py). Keyed by the
# component's name: (always, alternatives).
ONE_OF_BODIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def one_of_fields(*alternatives: str, always: tuple[str, ...] = ()) -> Callable[[T], T]:
    """Document a request Struct as `oneOf` bodies: `always` plus exactly one of `alternatives`."""

    def register(cls: T) -> T:
        ONE_OF_BODIES[cls.__name__] = (always, alternatives)
        return cls

    return register


# The JSON body's own refusals: malformed (400), too large (413), not JSON (415).
_BODY_ERRORS = (400, 413, 415)
BEARER_SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]


class ApiController(Controller):
    """A controller that declares once what its handlers can answer: `errors`, the statuses of
    every handler of it, plus a handler's own (`opt={ERRORS: (404,)}`), its JSON body's (400,
    413, 415, for a `require_json_body` handler) and, where `opt` (the controller's or the
    handler's) says `AUTH`, 401 and the Bearer security scheme; each status as the error
    envelope in the API document (500 always). A handler's own `responses` (a 200's
    description) come first and stay."""

    errors: ClassVar[tuple[int, ...]] = ()

    def get_route_handlers(self) -> list[BaseRouteHandler]:
        handlers = super().get_route_handlers()
        for handler in handlers:
            if not isinstance(handler, HTTPRouteHandler):
                continue
            opt = {**(self.opt or {}), **handler.opt}
            statuses = set(self.errors) | set(opt.get(ERRORS, ()))
            if handler.before_request is require_json_body:
                statuses.update(_BODY_ERRORS)
            if opt.get(AUTH):
                statuses.add(401)
                handler.security = handler.security or BEARER_SECURITY
            own = {status: spec for status, spec in (handler.responses or {}).items()}
            handler.responses = {**own, **error_responses(*sorted(statuses - set(own)))}
        return handlers


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """before_request: a request that carries a body must say it is JSON.

    Async on purpose: Litestar runs a sync hook on a worker thread, a thread hop per request.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    length = request.headers.get("content-length")
    has_body = (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in request.headers
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise HTTPException(status_code=415)


_AT_PATH = re.compile(r" - at `\$\.?(.*)`$")


@functools.cache
def _decoder(body_type: Any) -> msgspec.json.Decoder[Any] | None:
    try:
        return msgspec.json.Decoder(body_type, strict=True)
    except TypeError:  # not a type msgspec decodes itself: Litestar's own conversion applies
        return None


class StrictJSONRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded straight into the handler's `data` type, strictly.

    Litestar decodes the body to plain values and then converts them with msgspec's lax rules
    (meant for query strings), under which `0` and `"false"` are booleans; the document says
    `boolean`. Decoded here with the same Struct and constraints, only strictly; the Struct it
    yields passes Litestar's conversion unchanged (and it is one decode instead of two).

    A body that is invalid under both rules is left to Litestar, which reports it after the
    dependencies ran, as before (a bad token is still a 401 first); one that only lax coercion
    accepts is refused here, at extraction.
    """

    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        decoder = _decoder(field.annotation) if field is not None else None
        if decoder is None or self._json is not Empty or self._connection_state.json is not Empty:
            return await super().json()
        body = await self.body()
        try:
            value = decoder.decode(body or b"null")
        except msgspec.ValidationError as strict_error:
            plain = await super().json()
            try:
                msgspec.convert(plain, field.annotation, strict=False)  # type: ignore[union-attr]
            except msgspec.ValidationError:
                return plain
            raise _invalid(str(strict_error)) from None
        except msgspec.DecodeError:
            return await super().json()  # malformed JSON: Litestar's own answer
        self._json = self._connection_state.json = value
        return value


def _invalid(message: str) -> ValidationException:
    """Litestar's own validation error for the body (what the envelope's `details` are made from)."""
    match = _AT_PATH.search(message)
    key = (match.group(1) if match else "") or "data"
    return ValidationException(
        detail="Validation failed", extra=[{"message": message.split(" - at ", 1)[0], "key": key, "source": "body"}]
    )


def refuse_query_tokens(scope: Scope) -> None:
    """An endpoint that takes a Bearer token refuses a request carrying `access_token` in its
    query string (401 AUTH_TOKEN_INVALID), even with a good Authorization header: URLs end up
    in logs, histories and Referer headers, so a client that puts tokens there must notice.

    Called by the Bearer-token dependency (provide_claims), not as a Litestar guard: a guard
    costs a route-handler copy on every request, and verify is the hot path.
    """
    query: bytes = scope.get("query_string", b"")
    if b"access_token" not in query:
        return  # the common case, without parsing the query
    if QUERY_TOKEN_PARAMETER in parse_qs(query.decode("latin-1"), keep_blank_values=True):
        raise TokenInvalid("Send the access token in the Authorization header, never in the URL")
