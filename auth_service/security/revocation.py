"""Revocation state of access tokens: Redis for speed, PostgreSQL as the source of truth.

Per user (keys share the `{user_id}` hash tag, so one MGET works on Redis Cluster):

- `<p>:{uid}:u`       "<active>:<valid_after>"; its presence means Redis holds every
                      live revocation of this user (filled from PostgreSQL on a miss).
- `<p>:{uid}:j:<jti>` a logged-out access token, until the token's own expiry.
- `<p>:{uid}:f:<sid>` a revoked session (refresh family), as long as an access token
                      minted for it can live.

A verify is one MGET of those three keys. On a miss of the user key, or when Redis
does not answer, the same questions go to PostgreSQL.
Redis must not evict these keys (`maxmemory-policy noeviction`): a lost jti key
while the user key stays would let a logged-out token pass.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.security.resp import Command
from auth_service.security.tokens import AccessClaims
from db.models import User
from db.repositories import RefreshTokenRepository, TokenBlacklistRepository, UserRepository

__all__ = ["RevocationStore"]

log = structlog.get_logger()

# How long Redis remembers a user's state before asking PostgreSQL again.
USER_STATE_TTL = 86400


class RevocationStore:
    """Answers "is this access token still good?" and records revocations.

    Args:
        redis: the shared Redis client.
        session_factory: opens a PostgreSQL session for the cold path.
        prefix: key prefix (REDIS_KEY_PREFIX).
        access_ttl: access token lifetime in seconds.
    """

    def __init__(
        self, redis: Redis, session_factory: Callable[[], AsyncSession], *, prefix: str, access_ttl: int
    ) -> None:
        self._redis = redis
        self._sessions = session_factory
        self._prefix = prefix
        self._access_ttl = access_ttl

    @property
    def access_ttl(self) -> int:
        return self._access_ttl

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}:{{{user_id}}}:u"

    def _jti_key(self, user_id: str, jti: str) -> str:
        return f"{self._prefix}:{{{user_id}}}:j:{jti}"

    def _family_key(self, user_id: str, sid: str) -> str:
        return f"{self._prefix}:{{{user_id}}}:f:{sid}"

    def keys(self, claims: AccessClaims) -> tuple[str, str, str]:
        """The three keys whose MGET answers for this token (the caller may pipeline it)."""
        return (
            self._user_key(claims.sub),
            self._jti_key(claims.sub, claims.jti),
            self._family_key(claims.sub, claims.sid),
        )

    async def is_revoked(self, claims: AccessClaims) -> bool:
        """True when the token was logged out, its session revoked, or its user disabled or reset."""
        try:
            marks = await self._redis.mget(self.keys(claims))
        except RedisError:
            marks = None
        return await self.decide(claims, marks)

    async def decide(self, claims: AccessClaims, marks: list[bytes | None] | None) -> bool:
        """Judge a token from its MGET reply; None means Redis did not answer."""
        if marks is None:
            log.warning("revocation.redis_unavailable")
            return await self._is_revoked_in_db(claims, refill=False)
        state, jti_mark, family_mark = marks
        if state is None:
            return await self._is_revoked_in_db(claims, refill=True)
        if jti_mark is not None or family_mark is not None:
            return True
        active, _, valid_after = state.partition(b":")
        return active != b"1" or claims.iat < int(valid_after or 0)

    async def _is_revoked_in_db(self, claims: AccessClaims, *, refill: bool) -> bool:
        try:
            user_id = UUID(claims.sub)
            family_id = UUID(claims.sid)
        except ValueError:
            return True
        async with self._sessions() as session:
            users = UserRepository(session=session)
            state = await users.revocation_state(user_id)
            if state is None:
                return True
            active, valid_after = state
            blacklist = TokenBlacklistRepository(session=session)
            families = RefreshTokenRepository(session=session)
            revoked = (
                not active
                or (valid_after is not None and claims.iat < int(valid_after.timestamp()))
                or await blacklist.is_blacklisted(claims.jti)
                or await families.family_revoked(family_id)
            )
            if refill:
                now = dt.datetime.now(dt.UTC)
                jtis = await blacklist.live_for_user(user_id, now)
                since = now - dt.timedelta(seconds=self._access_ttl)
                revoked_families = await families.families_revoked_since(user_id, since)
                await self._refill(claims.sub, active, valid_after, jtis, revoked_families)
        return revoked

    async def _refill(
        self,
        user_id: str,
        active: bool,
        valid_after: dt.datetime | None,
        jtis: Iterable[tuple[str, dt.datetime]],
        families: Iterable[UUID],
    ) -> None:
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for jti, expires_at in jtis:
                    pipe.set(self._jti_key(user_id, jti), 1, ex=max(1, int(expires_at.timestamp() - now) + 1))
                for family in families:
                    pipe.set(self._family_key(user_id, str(family)), 1, ex=self._access_ttl + 1)
                # Written last, so it never claims a state whose revocations are not yet in Redis.
                pipe.set(self._user_key(user_id), _state(active, valid_after), ex=USER_STATE_TTL, nx=True)
                await pipe.execute()
        except RedisError:
            log.warning("revocation.refill_failed")

    def remember_command(self, user_id: str, active: bool, valid_after: dt.datetime | None) -> Command:
        """After a login, let Redis answer for this user (never overwriting a newer state).

        A command for the caller to send with its others: the login's Redis bookkeeping is one round trip.
        """
        return ("SET", self._user_key(user_id), _state(active, valid_after), "EX", USER_STATE_TTL, "NX")

    async def revoke(
        self,
        user_id: str,
        *,
        jti: str | None = None,
        token_exp: int | None = None,
        families: Iterable[UUID | str] = (),
        user_state: tuple[bool, dt.datetime | None] | None = None,
    ) -> None:
        """Write revocations to Redis in one pipeline. Raises RedisError when Redis is down."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if jti is not None and token_exp is not None:
                pipe.set(self._jti_key(user_id, jti), 1, ex=max(1, int(token_exp - time.time()) + 1))
            for family in families:
                pipe.set(self._family_key(user_id, str(family)), 1, ex=self._access_ttl + 1)
            if user_state is not None:
                pipe.set(self._user_key(user_id), _state(*user_state), ex=USER_STATE_TTL)
            await pipe.execute()

    async def revoke_all_sessions(
        self,
        session: AsyncSession,
        user: User,
        *,
        jti: str | None = None,
        token_exp: int | None = None,
        also: Iterable[UUID] = (),
    ) -> int:
        """Kill every token of `user`: tokens-valid-after, every refresh family, Redis markers.

        Logout everywhere, deactivation and password change all come here. The caller
        commits `session`; a RedisError propagates so the caller can roll back.

        Returns:
            how many sessions were marked revoked.
        """
        now = dt.datetime.now(dt.UTC)
        user.tokens_valid_after = now
        refresh = RefreshTokenRepository(session=session)
        since = now - dt.timedelta(seconds=self._access_ttl)
        families = {*await refresh.families_issued_since(user.id, since), *also}
        await refresh.revoke_user(user.id, now)
        await self.revoke(
            str(user.id), jti=jti, token_exp=token_exp, families=families, user_state=(user.is_active, now)
        )
        return len(families)


def _state(active: bool, valid_after: dt.datetime | None) -> str:
    return f"{int(active)}:{int(valid_after.timestamp()) if valid_after else 0}"
