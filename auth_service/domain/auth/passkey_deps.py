"""Dependency providers of the passkey endpoints (passwordless login here, enrolment in
domain/account): the ceremony store, the relying party and the services, per request."""

from __future__ import annotations

from litestar.di import NamedDependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.passkey_login import PasskeyLogin
from auth_service.domain.auth.passkeys import PasskeyAssertions, RelyingParty
from auth_service.domain.auth.service import AuthService
from auth_service.lib.redis.ceremonies import CeremonyStore
from auth_service.settings import Settings

__all__ = ["provide_ceremonies", "provide_passkey_login", "provide_relying_party"]


def provide_ceremonies(redis: NamedDependency[Redis], settings: NamedDependency[Settings]) -> CeremonyStore:
    return CeremonyStore(redis, settings.redis.key_prefix)


def provide_relying_party(settings: NamedDependency[Settings]) -> RelyingParty:
    return RelyingParty.from_settings(settings.mfa)


async def provide_passkey_login(
    db_session: NamedDependency[AsyncSession],
    ceremonies: NamedDependency[CeremonyStore],
    relying_party: NamedDependency[RelyingParty],
    auth: NamedDependency[AuthService],
    limits: NamedDependency[EndpointLimits],
) -> PasskeyLogin:
    return PasskeyLogin(db_session, PasskeyAssertions(db_session, relying_party), ceremonies, auth, limits)
