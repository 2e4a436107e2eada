"""Dependency providers of the auth endpoints."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.auth.services import AuthService, ClientInfo
from auth_service.errors import TokenInvalid
from auth_service.resources import Resources
from auth_service.security.client_ip import client_ip
from auth_service.security.tokens import AccessClaims

__all__ = ["bearer_token", "provide_auth_service", "provide_claims", "provide_client"]


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
        refresh_ttl=r.settings.refresh_ttl_seconds,
        reuse_grace=r.settings.refresh_reuse_grace_seconds,
    )


def provide_client(request: Request[Any, Any, Any], state: State) -> ClientInfo:
    peer = request.client.host if request.client else None
    trusted = resources_of(state).settings.trusted_proxy_networks
    ip = client_ip(peer, request.headers.get("x-forwarded-for"), trusted)
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise TokenInvalid
    return token


async def provide_claims(request: Request[Any, Any, Any], state: State) -> AccessClaims:
    return await resources_of(state).verifier.verify(bearer_token(request))
