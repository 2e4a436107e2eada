"""Dependency providers of the auth endpoints: typed, and fed by the app's providers
(server/providers.py), never by reading the app's state."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.types import Scope
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.factors import MfaKit
from auth_service.domain.auth.mfa.pending import TOKEN_PREFIX, PendingLogins
from auth_service.domain.auth.mfa.step import SecondStep
from auth_service.domain.auth.passkeys import PasskeyAssertions, RelyingParty
from auth_service.domain.auth.service import AuthService, ClientInfo
from auth_service.domain.auth.suspicious import SuspicionRules
from auth_service.domain.auth.verify import TokenVerifier
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.lib.client_ip import client_ip
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.crypto.tokens import AccessClaims, TokenService
from auth_service.lib.errors import TokenInvalid
from auth_service.lib.http import refuse_query_tokens
from auth_service.lib.principal import Subject
from auth_service.lib.redis.ceremonies import CeremonyStore
from auth_service.settings import Settings

__all__ = [
    "AuthPolicy",
    "Authenticator",
    "bearer_token",
    "provide_auth_service",
    "provide_client",
    "provide_second_step",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# Plain classes, not dataclasses: Litestar validates a dependency's value with msgspec, which
# walks a dataclass's fields on every request but only isinstance-checks other classes.


class AuthPolicy:
    """The settings a login and a refresh apply, built once per app."""

    __slots__ = ("refresh_ttl", "require_verified_email", "reuse_grace", "suspicion")

    def __init__(
        self, *, refresh_ttl: int, reuse_grace: int, suspicion: SuspicionRules, require_verified_email: bool = True
    ) -> None:
        self.refresh_ttl = refresh_ttl
        self.reuse_grace = reuse_grace
        self.suspicion = suspicion
        self.require_verified_email = require_verified_email


class Authenticator:
    """Turns a request's Bearer token into verified claims (and its peer into the client IP)."""

    __slots__ = ("limits", "pending", "trusted_proxies", "verifier")

    def __init__(
        self,
        verifier: TokenVerifier,
        limits: EndpointLimits,
        trusted_proxies: Sequence[Network],
        pending: PendingLogins | None = None,
    ) -> None:
        self.verifier = verifier
        self.limits = limits
        self.trusted_proxies = trusted_proxies
        self.pending = pending

    def client_ip(self, peer: str | None, forwarded: list[str]) -> str:
        return client_ip(peer, forwarded, self.trusted_proxies)

    def request_ip(self, request: Request[Any, Any, Any]) -> str:
        """The client IP of a Litestar request (TRUSTED_PROXIES applied)."""
        peer = request.client.host if request.client else None
        return self.client_ip(peer, request.headers.getall("x-forwarded-for", []))

    async def enrolling(self, scope: Scope) -> Subject | None:
        """An enrolling login's subject from `Authorization: Bearer <mfa_token>` (routes that
        accept it only: lib/principal.py), bound to the IP its login came from; None when the
        header holds something else (an access token: the normal check follows).

        Raises:
            TokenInvalid: an mfa_token that is not a live enrolling login from this IP.
        """
        authorization = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
        try:
            token = _bearer(authorization)
        except TokenInvalid:
            return None
        if self.pending is None or not token.startswith(TOKEN_PREFIX):
            return None
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-forwarded-for"]
        client = scope.get("client")
        ip = self.client_ip(client[0] if client else None, forwarded)
        await self.limits.public(ip, "mfa")
        login = await self.pending.peek(token, ip)
        if login is None or not login.enrolling:
            raise TokenInvalid
        return Subject(str(login.user_id), login.username, (), "", how="mfa_token", mfa_token=token)

    async def claims(self, scope: Scope, endpoint: str) -> AccessClaims:
        """The verified claims of the request's Bearer token, with the endpoint's per-user limit;
        on the raw ASGI scope, so the verify fast path (server/dispatch.py) shares it.

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
        ip = self.client_ip(client[0] if client else None, forwarded)
        try:
            refuse_query_tokens(scope)
            token = _bearer(authorization)
        except TokenInvalid:
            await self.limits.public(ip, endpoint)
            raise
        return await self.verifier.verify(token, ip=ip, endpoint=endpoint)


async def provide_auth_service(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    tokens: NamedDependency[TokenService],
    revocation: NamedDependency[RevocationStore],
    limits: NamedDependency[EndpointLimits],
    auth_policy: NamedDependency[AuthPolicy],
    mfa: NamedDependency[MfaKit],
) -> AuthService:
    return AuthService(
        db_session,
        hasher=hasher,
        tokens=tokens,
        revocation=revocation,
        limits=limits,
        refresh_ttl=auth_policy.refresh_ttl,
        reuse_grace=auth_policy.reuse_grace,
        suspicion=auth_policy.suspicion,
        require_verified_email=auth_policy.require_verified_email,
        mfa=mfa,
    )


async def provide_second_step(
    db_session: NamedDependency[AsyncSession],
    auth: NamedDependency[AuthService],
    mfa: NamedDependency[MfaKit],
    limits: NamedDependency[EndpointLimits],
    redis: NamedDependency[Redis],
    settings: NamedDependency[Settings],
) -> SecondStep:
    passkeys = PasskeyAssertions(db_session, RelyingParty.from_settings(settings.mfa))
    return SecondStep(db_session, auth, mfa, limits, passkeys, CeremonyStore(redis, settings.redis.key_prefix))


def provide_client(request: Request[Any, Any, Any], authenticator: NamedDependency[Authenticator]) -> ClientInfo:
    return ClientInfo(ip=authenticator.request_ip(request), user_agent=request.headers.get("user-agent"))


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
