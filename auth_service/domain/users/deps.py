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
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.settings import Settings

__all__ = ["provide_password_reset", "provide_registration", "provide_user_service", "provide_verification"]


async def provide_user_service(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    revocation: NamedDependency[RevocationStore],
    password_policy: NamedDependency[PasswordPolicy],
) -> UserService:
    return UserService(db_session, hasher, revocation, password_policy)


async def provide_password_reset(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    revocation: NamedDependency[RevocationStore],
    password_policy: NamedDependency[PasswordPolicy],
    account_links: NamedDependency[AccountLinks],
    settings: NamedDependency[Settings],
) -> PasswordReset:
    ttl = settings.pages.password_reset_ttl_minutes
    return PasswordReset(db_session, hasher, revocation, password_policy, account_links, ttl)


async def provide_registration(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    password_policy: NamedDependency[PasswordPolicy],
    account_links: NamedDependency[AccountLinks],
) -> Registration:
    return Registration(db_session, hasher, password_policy, account_links)


async def provide_verification(
    db_session: NamedDependency[AsyncSession], account_links: NamedDependency[AccountLinks]
) -> EmailVerification:
    return EmailVerification(db_session, account_links)
