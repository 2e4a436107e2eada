"""Dependency providers of the sessions domain."""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.audit import Actor

__all__ = ["provide_session_service"]


async def provide_session_service(
    db_session: NamedDependency[AsyncSession],
    revocation: NamedDependency[RevocationStore],
    actor: NamedDependency[Actor],
) -> SessionService:
    return SessionService(db_session, revocation, actor)
