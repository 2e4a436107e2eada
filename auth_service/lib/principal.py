"""Who is calling: the current user of an authenticated request, and the role guard.

`current_user` is a dependency (server/providers.py registers it for every route): it needs
the request's verified claims, which the `claims` dependency provides once per request.
`requires_role` is a Litestar guard; guards run before dependencies, so it checks the
Bearer token itself (through the app's authenticator) and leaves the claims in the scope,
where `claims` finds them: a request is verified once either way. A refusal (403) is handed
to the app's denial recorder first (server/denials.py: an audit event and a warning), so a
refused admin action leaves a trace.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard, Scope

from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.errors import Forbidden

__all__ = [
    "AUTHENTICATOR_STATE_KEY",
    "DENIALS_STATE_KEY",
    "ClaimsReader",
    "CurrentUser",
    "DenialRecorder",
    "provide_current_user",
    "requires_role",
]

# Where the composition root leaves the authenticator for guards (the only state guards read).
AUTHENTICATOR_STATE_KEY = "authenticator"
DENIALS_STATE_KEY = "denials"


class ClaimsReader(Protocol):
    async def claims(self, scope: Scope, endpoint: str) -> AccessClaims: ...


class DenialRecorder(Protocol):
    async def forbidden(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, claims: AccessClaims
    ) -> None: ...


class CurrentUser(msgspec.Struct, frozen=True):
    """The caller, as its access token says (no database read)."""

    id: str
    username: str
    roles: tuple[str, ...]
    session_id: str

    def has_role(self, role: str) -> bool:
        return role in self.roles


def provide_current_user(claims: NamedDependency[AccessClaims]) -> CurrentUser:
    return CurrentUser(id=claims.sub, username=claims.username, roles=tuple(claims.roles), session_id=claims.sid)


def requires_role(role: str) -> Guard:
    """A guard: 401 without a valid Bearer token, 403 FORBIDDEN without `role`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        claims = connection.scope.get("auth")
        if not isinstance(claims, AccessClaims):
            reader: ClaimsReader = getattr(connection.app.state, AUTHENTICATOR_STATE_KEY)
            claims = await reader.claims(connection.scope, str(handler.opt.get("rate_limit", "api")))
            connection.scope["auth"] = claims
        if role not in claims.roles:
            recorder: DenialRecorder | None = getattr(connection.app.state, DENIALS_STATE_KEY, None)
            if recorder is not None:
                await recorder.forbidden(connection, handler, claims)
            raise Forbidden

    return guard
