"""The per-IP limit of every route that does not limit itself (an app-level before_request)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from auth_service.server.resources import Resources

__all__ = ["apply_public_limit"]


async def apply_public_limit(request: Request[Any, Any, Any]) -> None:
    """App-level before_request: the per-IP limit for handlers that do not limit themselves."""
    if request.route_handler.opt.get("rate_limit"):
        return  # limits itself ("login", "verify", …) or is exempt ("none": the metrics scrape)
    resources: Resources = request.app.state.resources
    # The route template, never the raw path: it becomes a metric label (a bounded set).
    endpoint = str(request.scope.get("path_template") or "unmatched")
    await resources.limits.public(resources.authenticator.request_ip(request), endpoint)
