"""Providers of the admin API's services (each from the request's session and the container)."""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.admin.reads import AdminReads
from auth_service.domain.admin.service import AdminService
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.settings import Settings

__all__ = ["provide_admin_reads", "provide_admin_service"]


async def provide_admin_service(
    db_session: NamedDependency[AsyncSession],
    hasher: NamedDependency[PasswordHasher],
    revocation: NamedDependency[RevocationStore],
    password_policy: NamedDependency[PasswordPolicy],
    account_links: NamedDependency[AccountLinks],
    settings: NamedDependency[Settings],
) -> AdminService:
    require_verified = settings.accounts.require_verified_email
    return AdminService(
        db_session,
        hasher,
        revocation,
        password_policy,
        account_links,
        lifetimes=settings.links,
        require_verified_email=require_verified,
    )


async def provide_admin_reads(db_session: NamedDependency[AsyncSession]) -> AdminReads:
    return AdminReads(db_session)
