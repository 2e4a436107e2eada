"""Dependency providers of the users domain."""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.recovery import PasswordReset
from auth_service.domain.users.registration import Registration
from auth_service.domain.users.service import UserService
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.audit import Actor
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.settings import Settings

__all__ = [
    "provide_password_reset",
    "provide_registration",
    "provide_user_service",
    "provide_verification",
]


async def provide_user_service(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    revocation: NamedDependency[RevocationStore],
    password_policy: NamedDependency[PasswordPolicy],
    actor: NamedDependency[Actor],
    settings: NamedDependency[Settings],
) -> UserService:
    return UserService(
        db_session,
        hasher,
        revocation,
        password_policy,
        actor,
        require_verified_email=settings.accounts.require_verified_email,
        lifetimes=settings.links,
    )


async def provide_password_reset(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    revocation: NamedDependency[RevocationStore],
    password_policy: NamedDependency[PasswordPolicy],
    account_links: NamedDependency[AccountLinks],
    settings: NamedDependency[Settings],
    actor: NamedDependency[Actor],
) -> PasswordReset:
    ttl = settings.links.password_reset_ttl_minutes
    return PasswordReset(db_session, hasher, revocation, password_policy, account_links, ttl, actor)


async def provide_registration(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    password_policy: NamedDependency[PasswordPolicy],
    account_links: NamedDependency[AccountLinks],
    actor: NamedDependency[Actor],
    settings: NamedDependency[Settings],
) -> Registration:
    return Registration(db_session, hasher, password_policy, account_links, settings.links, actor)


async def provide_verification(
    db_session: NamedDependency[AsyncSession],
    account_links: NamedDependency[AccountLinks],
    settings: NamedDependency[Settings],
) -> EmailVerification:
    return EmailVerification(db_session, account_links, settings.links)
