"""Ending sessions: logout, "this wasn't me", and the revocation of one session, free of HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from functools import cached_property

import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.notifications.repository import NotificationRepository
from auth_service.domain.sessions.repository import RefreshTokenRepository, TokenBlacklistRepository
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.links import SignedLink
from auth_service.lib.crypto.tokens import AccessClaims, hash_refresh_token
from auth_service.lib.errors import ServiceUnavailable, TokenRevoked

__all__ = ["SessionService"]

log = structlog.get_logger()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionService:
    """Every way a session ends, each one the revocation protocol (revocation.py): lock the
    user's row, write PostgreSQL, tell Redis, commit.

    Args:
        session: the request's database session; this service commits it.
        revocation: Redis/PostgreSQL revocation state.
    """

    def __init__(self, session: AsyncSession, revocation: RevocationStore, actor: Actor | None = None) -> None:
        self._actor = actor or Actor()
        self._session = session
        self._revocation = revocation

    @cached_property
    def _refresh(self) -> RefreshTokenRepository:
        return RefreshTokenRepository(session=self._session)

    @cached_property
    def _blacklist(self) -> TokenBlacklistRepository:
        return TokenBlacklistRepository(session=self._session)

    @cached_property
    def _notifications(self) -> NotificationRepository:
        return NotificationRepository(session=self._session)

    async def revoke_session(self, user_id: uuid.UUID, family_id: uuid.UUID, reason: str | None = None) -> None:
        """Revoke one session (refresh family) in a transaction of its own; 503 when Redis cannot be told.

        Audited as `session.revoke`: by its owner, or, with a `reason` (a stolen refresh token), by
        the service itself (no actor)."""
        if await self._revocation.lock(self._session, user_id) is not None:
            await self._revocation.revoke_families(self._session, [family_id])
            details = {"session_id": str(family_id)} | ({"reason": reason} if reason else {})
            actor = self._actor if reason else self._actor.as_user(user_id)
            await record(self._session, actor, AuditEntry("session.revoke", user_id, details))
        await self._commit(user_id)

    async def logout(self, claims: AccessClaims, refresh_token: str | None, everywhere: bool) -> None:
        """Revoke the access token and its session, or every session of the user.

        PostgreSQL first, under the user's lock, then Redis is told, then the commit: when
        Redis cannot be told nothing is committed and the caller gets ServiceUnavailable, so a
        retry is safe.
        """
        user_id = uuid.UUID(claims.sub)
        if await self._revocation.lock(self._session, user_id) is None:
            await self._session.rollback()
            raise TokenRevoked  # a well-signed token of a deleted user
        families: set[uuid.UUID] = {uuid.UUID(claims.sid)}
        if refresh_token:
            row = await self._refresh.get_by_hash(hash_refresh_token(refresh_token))
            if row is not None and row.user_id == user_id:
                families.add(row.family_id)
        await self._blacklist.blacklist(claims.jti, user_id, dt.datetime.fromtimestamp(claims.exp, dt.UTC))
        if everywhere:
            await self._revocation.revoke_everything(self._session, user_id)
        else:
            await self._revocation.revoke_families(self._session, families)
        await self._commit(user_id)
        log.info("logout.succeeded", user_id=claims.sub, everywhere=everywhere, sessions=len(families))

    async def disavow(self, link: SignedLink) -> bool:
        """ "This wasn't me": revoke every session and live access token of the link's user, once.

        Returns False when the link was already used (or its notification is gone).
        """
        if await self._revocation.lock(self._session, link.user_id) is None:
            await self._session.rollback()
            return False
        if not await self._notifications.disavow(link.notification_id, link.user_id, _now()):
            await self._session.rollback()
            return False
        sessions = await self._revocation.revoke_everything(self._session, link.user_id)
        entry = AuditEntry("account.not_me", link.user_id, {"sessions": sessions})
        await record(self._session, self._actor.as_user(link.user_id), entry)
        await self._commit(link.user_id)
        log.warning(
            "account.login_disavowed",
            user_id=str(link.user_id),
            notification_id=str(link.notification_id),
            sessions=sessions,
        )
        return True

    async def _commit(self, user_id: uuid.UUID | str) -> None:
        try:
            await self._revocation.commit(self._session, user_id)
        except RedisError:
            raise ServiceUnavailable from None
