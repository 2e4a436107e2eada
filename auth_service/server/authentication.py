"""The authentication layer: every route whose layered `opt` says `auth` (a controller declares
it once) is authenticated before its guards and dependencies run, into the request's one
`Subject` (lib/principal.py `authenticate`). A refusal (401, 429, 503) is answered here, inside
the request context, by the app's one exception handler, as the public limit's is."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from auth_service.lib.principal import AUTH, authenticate
from auth_service.server.exception_handlers import exception_handler_for

__all__ = ["AuthenticationMiddleware"]


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["route_handler"].opt.get(AUTH):
            try:
                await authenticate(scope)
            except Exception as exc:
                request: Request[Any, Any, Any] = Request(scope, receive)
                response = exception_handler_for(exc)(request, exc)
                await response.to_asgi_response(None, request)(scope, receive, send)
                return
        await self.app(scope, receive, send)
