"""Dependency providers of the auth endpoints."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.auth.services import AuthService, ClientInfo
from auth_service.auth.suspicious import SuspicionRules
from auth_service.errors import TokenInvalid
from auth_service.hardening import refuse_query_tokens
from auth_service.resources import Resources
from auth_service.security.client_ip import client_ip
from auth_service.security.tokens import AccessClaims

__all__ = [
    "apply_public_limit",
    "bearer_token",
    "claims_of_request",
    "client_ip_of",
    "provide_auth_service",
    "provide_claims",
    "provide_client",
]


def resources_of(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


async def provide_auth_service(state: State, db_session: NamedDependency[AsyncSession]) -> AuthService:
    r = resources_of(state)
    return AuthService(
        db_session,
        hasher=r.hasher,
        tokens=r.tokens,
        revocation=r.revocation,
        limits=r.limits,
        refresh_ttl=r.settings.refresh_ttl_seconds,
        reuse_grace=r.settings.refresh_reuse_grace_seconds,
        suspicion=SuspicionRules(
            new_device_days=r.settings.suspicious_new_device_days,
            failures=r.settings.suspicious_failures,
            failure_window_minutes=r.settings.suspicious_failure_window_minutes,
        ),
    )


def client_ip_of(request: Request[Any, Any, Any], resources: Resources) -> str:
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.getall("x-forwarded-for", []), resources.trusted_proxies)


def provide_client(request: Request[Any, Any, Any], state: State) -> ClientInfo:
    ip = client_ip_of(request, resources_of(state))
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    return _bearer(request.headers.getall("authorization", []))


def _bearer(headers: list[str]) -> str:
    if len(headers) != 1:
        raise TokenInvalid  # none, or several: a proxy and we might each read a different one
    scheme, _, token = headers[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise TokenInvalid
    return token


async def provide_claims(request: Request[Any, Any, Any]) -> AccessClaims:
    """The verified claims of the Bearer token; applies the endpoint's per-user limit."""
    endpoint = str(request.route_handler.opt.get("rate_limit", "api"))
    return await claims_of_request(request.scope, resources_of(request.app.state), endpoint)


async def claims_of_request(scope: Scope, resources: Resources, endpoint: str) -> AccessClaims:
    """provide_claims on the raw ASGI scope, for the verify fast path (auth/fast_verify.py).

    Raises:
        TokenInvalid, TokenExpired, TokenRevoked, RateLimited, ServiceUnavailable.
    """
    # One pass over the raw headers: building Litestar's Headers object costs more than this whole check.
    authorization: list[str] = []
    forwarded: list[str] = []
    for raw_name, value in scope["headers"]:
        name = raw_name.lower()
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    client = scope.get("client")
    ip = client_ip(client[0] if client else None, forwarded, resources.trusted_proxies)
    try:
        refuse_query_tokens(scope)
        token = _bearer(authorization)
    except TokenInvalid:
        await resources.limits.public(ip, endpoint)
        raise
    return await resources.verifier.verify(token, ip=ip, endpoint=endpoint)


async def apply_public_limit(request: Request[Any, Any, Any]) -> None:
    """App-level before_request: the per-IP limit for handlers that do not limit themselves."""
    if request.route_handler.opt.get("rate_limit"):
        return  # limits itself ("login", "verify", …) or is exempt ("none": the metrics scrape)
    resources = resources_of(request.app.state)
    # The route template, never the raw path: it becomes a metric label (a bounded set).
    endpoint = str(request.scope.get("path_template") or "unmatched")
    await resources.limits.public(client_ip_of(request, resources), endpoint)
