"""The per-IP limit of every route that does not limit itself.

A route middleware rather than the app's before_request: Litestar runs the nearest layer's
before_request only, so a handler with its own hook (require_json_body) silently replaced the
limit. Middleware of every layer runs, so no handler can opt out by accident.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from auth_service.container import Resources
from auth_service.server.exception_handlers import exception_handler_for

__all__ = ["PublicLimitMiddleware"]


class PublicLimitMiddleware:
    """RATE_LIMIT_PUBLIC per client IP for handlers without a `rate_limit` opt of their own
    ("login", "verify", … limit themselves; "none" exempts the metrics scrape)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not scope["route_handler"].opt.get("rate_limit"):
            request: Request[Any, Any, Any] = Request(scope, receive)
            try:
                await _apply(request)
            except Exception as exc:
                # Answered here, inside the request context (its status is the one measured),
                # by the app's one exception handler.
                response = exception_handler_for(exc)(request, exc)
                await response.to_asgi_response(None, request)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _apply(request: Request[Any, Any, Any]) -> None:
    resources: Resources = request.app.state.resources
    # The route template, never the raw path: it becomes a metric label (a bounded set).
    endpoint = str(request.scope.get("path_template") or "unmatched")
    await resources.limits.public(resources.authenticator.request_ip(request), endpoint)
