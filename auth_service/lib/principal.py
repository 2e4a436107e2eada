"""Who is calling: the one authenticated `Subject` of a request, and the role guard.

A request is authenticated in one place, `authenticate(scope)`: the scheme (today a Bearer
access token; a page's cookie session and an OAuth access token are the next schemes) becomes
one typed `Subject`, kept in the scope, so that a request is verified once however many guards,
providers and handlers ask. The app's authentication middleware (server/authentication.py)
calls it before the guards for every route whose layered `opt` says `auth` (a controller says it
once, with `opt = {AUTH: BEARER}`); the `subject` dependency and `requires_role` call it too,
and find the subject already there. The verify fast path (server/dispatch.py) runs the same
claims check on raw ASGI.

The check itself (signature, expiry, issuer, audience, revocation and the endpoint's per-user
limit, one Redis round trip) is the authenticator's, which the composition root leaves in the
app's state (`AUTHENTICATOR_STATE_KEY`). A guard's refusal (403) is handed to the app's denial
recorder first (server/denials.py: an audit event and a warning), so a refused admin action
leaves a trace.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Protocol

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard, Scope

from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.errors import Forbidden, TokenInvalid
from auth_service.lib.http import ACCEPTS_MFA_TOKEN, AUTH, BEARER

__all__ = [
    "AUTH",
    "AUTHENTICATOR_STATE_KEY",
    "BEARER",
    "DENIALS_STATE_KEY",
    "ClaimsReader",
    "DenialRecorder",
    "How",
    "Subject",
    "authenticate",
    "authenticated_subject",
    "provide_subject",
    "requires_role",
]

# Where the composition root leaves the authenticator and the denial recorder (the only state
# this module reads).
AUTHENTICATOR_STATE_KEY = "authenticator"
DENIALS_STATE_KEY = "denials"
_SCOPE_KEY = "subject"

# How a subject authenticated: a Bearer access token today; a page's cookie session, an OAuth
# access token and the pending login of a second step are the next.
How = Literal["bearer", "cookie", "oauth", "mfa_token"]


class Subject(msgspec.Struct, frozen=True):
    """The caller, as its credential says (no database read)."""

    user_id: str
    username: str
    roles: tuple[str, ...]
    session_id: str
    how: How = "bearer"
    scopes: tuple[str, ...] = ()
    # The access token's claims, for a subject that came with one (verify answers from them).
    claims: AccessClaims | None = None
    # The pending login's token, for a subject that came with one (how="mfa_token": a login that
    # must enrol a second factor, on the routes that accept it: ACCEPTS_MFA_TOKEN).
    mfa_token: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.user_id)

    @property
    def token(self) -> AccessClaims:
        """The access token's claims (logout, verify); a subject without one is 401."""
        if self.claims is None:
            raise TokenInvalid
        return self.claims

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @classmethod
    def from_claims(cls, claims: AccessClaims) -> Subject:
        return cls(claims.sub, claims.username, tuple(claims.roles), claims.sid, "bearer", (), claims)


class ClaimsReader(Protocol):
    async def claims(self, scope: Scope, endpoint: str) -> AccessClaims: ...

    async def enrolling(self, scope: Scope) -> Subject | None:
        """The subject of an `Authorization: Bearer <mfa_token>` of a login that must enrol a
        factor (from the IP it was issued to); None when the header holds no mfa_token."""
        ...


class DenialRecorder(Protocol):
    async def forbidden(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, subject: Subject
    ) -> None: ...


async def authenticate(scope: Scope) -> Subject:
    """The request's subject, verified once and kept in the scope.

    Raises:
        TokenInvalid, TokenExpired, TokenRevoked: no usable credential (401).
        RateLimited: the endpoint's per-user limit (429); ServiceUnavailable: Redis down (503).
    """
    found = scope.get(_SCOPE_KEY)  # type: ignore[misc]
    if isinstance(found, Subject):
        return found
    reader: ClaimsReader = getattr(scope["app"].state, AUTHENTICATOR_STATE_KEY)
    handler = scope.get("route_handler")
    endpoint = str(handler.opt.get("rate_limit", "api")) if handler is not None else "api"
    enrolling = await reader.enrolling(scope) if handler is not None and handler.opt.get(ACCEPTS_MFA_TOKEN) else None
    subject = enrolling or Subject.from_claims(await reader.claims(scope, endpoint))
    scope[_SCOPE_KEY] = subject  # type: ignore[literal-required]
    return subject


def authenticated_subject(scope: Scope) -> Subject | None:
    """The subject of a request already authenticated, else None (for the actor's provider)."""
    found = scope.get(_SCOPE_KEY)  # type: ignore[misc]
    return found if isinstance(found, Subject) else None


async def provide_subject(scope: Scope) -> Subject:
    return await authenticate(scope)


def requires_role(role: str) -> Guard:
    """A guard: 401 without a valid credential, 403 FORBIDDEN without `role`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        subject = await authenticate(connection.scope)
        if not subject.has_role(role):
            recorder: DenialRecorder | None = getattr(connection.app.state, DENIALS_STATE_KEY, None)
            if recorder is not None:
                await recorder.forbidden(connection, handler, subject)
            raise Forbidden

    return guard
