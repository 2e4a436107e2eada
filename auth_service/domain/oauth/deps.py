"""Dependency providers of the OAuth domain."""

from __future__ import annotations

from litestar.di import NamedDependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.oauth.clients import ClientStore
from auth_service.domain.sessions.revocation import RevocationStore

__all__ = ["provide_client_store"]


async def provide_client_store(
    db_session: NamedDependency[AsyncSession],
    revocation: NamedDependency[RevocationStore],
    redis: NamedDependency[Redis],
) -> ClientStore:
    return ClientStore(db_session, revocation, redis)
