"""Refresh-token rotation: spend the token, mint its successor; a spent token presented again is
theft (its whole session ends) unless it comes within the grace period, which returns the same
successor (two tabs refreshing at once)."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.issue import ClientInfo, IssuedTokens, issue_pair
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.sessions.repository import RefreshTokenRepository
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.crypto.tokens import TokenService, family_of, hash_refresh_token
from auth_service.lib.errors import TokenExpired, TokenInvalid, TokenRevoked

__all__ = ["RefreshRotation"]

log = structlog.get_logger()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RefreshRotation:
    def __init__(
        self,
        session: AsyncSession,
        tokens: TokenService,
        revocation: RevocationStore,
        limits: EndpointLimits,
        refresh_ttl: int,
        grace: dt.timedelta,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._revocation = revocation
        self._limits = limits
        self._refresh_ttl = refresh_ttl
        self._grace = grace
        self._refresh = RefreshTokenRepository(session=session)

    async def refresh(self, presented: str, client: ClientInfo, *, oauth_client: str | None = None) -> IssuedTokens:
        """Rotate a refresh token: spend it and mint its successor.

        A token spent earlier is theft unless it is repeated within the grace period,
        in which case the same successor comes back (two tabs refreshing at once).

        Raises:
            TokenInvalid: unknown token.
            TokenExpired: the token's lifetime ended.
            TokenRevoked: the token or its family was revoked, or it was reused.
            RateLimited: over the per-session or per-IP limit.
            ServiceUnavailable: Redis is down.
        """
        family = family_of(presented)
        if family is None:
            raise TokenInvalid
        await self._limits.before_refresh(client.ip, family)
        token_hash = hash_refresh_token(presented)
        try:
            # The owner's share lock, held to the commit: a revocation of this user (logout,
            # password change, theft …) waits for this rotation and then revokes its successor
            # too, or has committed before and this rotation finds the token revoked.
            owner = await self._refresh.lock_owner(token_hash)
            if owner is None or owner.family_id.hex != family:
                raise TokenInvalid
            if owner.client_id != oauth_client:
                # Another client's session (or an OAuth one at /auth/refresh, or ours at /oauth2/token).
                raise TokenInvalid
            await self._limits.charge_refresh(family)
            now = _now()
            successor = self._tokens.successor_of(presented)
            rotation = await self._refresh.rotate(
                token_hash,
                successor_id=uuid.uuid4(),
                successor_hash=hash_refresh_token(successor),
                now=now,
                expires_at=now + dt.timedelta(seconds=self._refresh_ttl),
            )
            if rotation is None:
                return await self._refresh_not_live(token_hash, successor, now)
            if not rotation.is_active or rotation.username is None:
                # The successor was not written; the session ends with its owner's account.
                await self._session.rollback()
                await self._revoke_session(rotation.user_id, rotation.family_id, "account_inactive")
                raise TokenRevoked
            await self._session.commit()
        except BaseException:
            await self._session.rollback()
            raise
        return issue_pair(
            self._tokens,
            rotation.user_id,
            rotation.username,
            rotation.roles,
            rotation.family_id,
            successor,
            self._refresh_ttl,
            rotation.amr,
            client_id=rotation.client_id,
            scope=rotation.scope,
        )

    async def _refresh_not_live(self, token_hash: str, successor: str, now: dt.datetime) -> IssuedTokens:
        existing = await self._refresh.not_live(token_hash)
        if existing is None:
            raise TokenInvalid
        if existing.revoked_at is not None:
            raise TokenRevoked
        if existing.spent_at is None:
            raise TokenExpired
        if (
            now - existing.spent_at <= self._grace
            and existing.replaced_by_id is not None
            and existing.successor_hash is not None
            and existing.successor_expires_at is not None
            and existing.successor_revoked_at is None
            and hmac.compare_digest(existing.successor_hash, hash_refresh_token(successor))
            and existing.is_active
            and existing.username is not None
        ):
            await self._session.commit()
            remaining = int((existing.successor_expires_at - now).total_seconds())
            return issue_pair(
                self._tokens,
                existing.user_id,
                existing.username,
                existing.roles,
                existing.family_id,
                successor,
                remaining,
                existing.amr,
                client_id=existing.client_id,
                scope=existing.scope,
            )
        # Reuse of a spent token: someone holds a copy. Kill the whole session, in a transaction
        # of its own (this one's share lock cannot become the revocation's update lock).
        await self._session.rollback()
        await self._revoke_session(existing.user_id, existing.family_id, "refresh_token_reuse")
        log.warning("refresh.reuse_detected", user_id=str(existing.user_id), family_id=str(existing.family_id))
        raise TokenRevoked

    async def _revoke_session(self, user_id: uuid.UUID, family_id: uuid.UUID, reason: str) -> None:
        await SessionService(self._session, self._revocation).revoke_session(user_id, family_id, reason=reason)
