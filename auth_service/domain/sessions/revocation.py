"""Revocation state of access tokens: PostgreSQL is the truth, Redis a cache of it.

Redis holds one hash per user, `<p>:{uid}:rv` (the `{uid}` hash tag keeps it in one
Cluster slot), written whole by the one path that loaded every live revocation of the
user from PostgreSQL (the refill):

- `s`        "<active>:<tokens valid after>";
- `j:<jti>`  a logged-out access token that has not expired yet;
- `f:<sid>`  a session (refresh family) revoked within one access-token lifetime.

A verify is one HMGET of `s`, its `j:` and its `f:` field. When the hash is missing
(never loaded, flushed, restarted empty, evicted), the same questions go to PostgreSQL
and the hash is refilled. Because the hash is one key, losing it loses all of it: an
eviction or a deleted key sends the next verify to PostgreSQL; it can never leave a
partial state that lets a revoked token pass.

Every revocation (logout, logout everywhere, password change, deactivation, activation,
"this wasn't me", refresh-token theft) runs one protocol:

1. lock the user's row (`SELECT … FOR UPDATE`) before any other write;
2. write PostgreSQL (blacklist, revoked families, tokens_valid_after);
3. delete the user's hash in Redis; a Redis failure rolls everything back (503, nothing done);
4. commit; a failed commit leaves only a cache entry gone.

The refill holds the same row with `FOR SHARE` while it reads PostgreSQL *and* while it
writes Redis, so a revocation's delete comes either after the refill's write (and removes
it) or before the refill's read (and the refill sees the revocation). A refill write
that is lost in the network and arrives late could still land after a later delete; the
write therefore carries a deadline on Redis's clock, and a refill that got no answer to
its write keeps its lock until that deadline has passed. No order of events leaves a
hash in Redis that misses a committed revocation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.repository import (
    RefreshTokenRepository,
    TokenBlacklistRepository,
    UserStateRepository,
)
from auth_service.lib.crypto.tokens import AccessClaims

__all__ = ["REFILL_WINDOW_SECONDS", "USER_STATE_TTL", "RevocationStore", "UserState"]

log = structlog.get_logger()

# How long Redis keeps a user's hash before asking PostgreSQL again.
USER_STATE_TTL = 86400
# A refill's write must reach Redis within this long after the verify that started it
# (Redis's clock), or it is refused. Longer than DATABASE_STATEMENT_TIMEOUT's default (3 s),
# so a refill that waited for a lock still caches its answer.
REFILL_WINDOW_SECONDS = 5.0
# Revoked sessions are loaded with this much slack past one access-token lifetime, for
# clocks that differ between instances.
CLOCK_SLACK = dt.timedelta(seconds=60)
_FIELDS_PER_HSET = 200

# KEYS[1]: the user's hash. ARGV: deadline (ms, Redis clock), ttl (s), then field/value pairs
# ("s" first). Writes only a whole state, only before the deadline, and never over one that
# another refill already wrote. Returns 1 written, 0 already there, -1 too late.
REFILL_LUA = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[1]) then return -1 end
if redis.call('HEXISTS', KEYS[1], 's') == 1 then return 0 end
redis.call('DEL', KEYS[1])
local i = 3
while i <= #ARGV do
  local last = math.min(i + {2 * _FIELDS_PER_HSET - 1}, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class UserState(NamedTuple):
    """A user row as a revocation sees it, read under its lock."""

    is_active: bool
    tokens_valid_after: dt.datetime | None


def _state(active: bool, valid_after: dt.datetime | None) -> str:
    return f"{int(active)}:{int(valid_after.timestamp()) if valid_after else 0}"


class RevocationStore:
    """Answers "is this access token still good?" and runs the revocation protocol.

    Args:
        redis: the shared Redis client (cold paths: refill and invalidation).
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
        self._refill = redis.register_script(REFILL_LUA)
        self._held: set[asyncio.Task[None]] = set()

    @property
    def access_ttl(self) -> int:
        return self._access_ttl

    def key(self, user_id: str) -> str:
        """The user's revocation hash."""
        return f"{self._prefix}:{{{user_id}}}:rv"

    @staticmethod
    def fields(claims: AccessClaims) -> tuple[str, str]:
        """The token's two fields of the hash (verify's script reads them with `s`)."""
        return f"j:{claims.jti}", f"f:{claims.sid}"

    # ---- reading ----------------------------------------------------------------------------

    async def decide(
        self, claims: AccessClaims, marks: list[bytes | None] | None, redis_now_ms: int | None = None
    ) -> bool:
        """Judge a token from verify's HMGET reply (None: Redis did not answer).

        Args:
            marks: the `s`, `j:` and `f:` fields.
            redis_now_ms: Redis's clock when it found no state (starts the refill's deadline).
        """
        if marks is None:
            log.warning("revocation.redis_unavailable")
            return await self._cold(claims, refill_from=None)
        state, jti_mark, family_mark = marks
        if state is None:
            return await self._cold(claims, refill_from=redis_now_ms if redis_now_ms is not None else 0)
        if jti_mark is not None or family_mark is not None:
            return True
        active, _, valid_after = state.partition(b":")
        return active != b"1" or claims.iat < int(valid_after or 0)

    async def _cold(self, claims: AccessClaims, *, refill_from: int | None) -> bool:
        """PostgreSQL decides; with `refill_from` (Redis's clock in ms, 0: ask Redis) the
        user's hash is rebuilt under the row's share lock."""
        try:
            user_id = UUID(claims.sub)
            family_id = UUID(claims.sid)
        except ValueError:
            return True
        if refill_from == 0:
            refill_from = await self._redis_clock()
        refill = refill_from is not None
        started = time.monotonic()  # after Redis's clock was read: waiting from here is conservative
        session = self._sessions()
        handed_off = False
        try:
            users = UserStateRepository(session=session)
            state = await users.revocation_state(user_id, share_lock=refill)
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
                since = now - dt.timedelta(seconds=self._access_ttl) - CLOCK_SLACK
                revoked_families = await families.families_revoked_since(user_id, since)
                try:
                    assert refill_from is not None
                    await self._write(claims.sub, refill_from, UserState(active, valid_after), jtis, revoked_families)
                except RedisError:
                    # The write may still reach Redis: keep the lock until its deadline has
                    # passed, so no revocation can slip in before it (see the module docstring).
                    log.warning("revocation.refill_failed")
                    handed_off = True
                    self._hold(session, until=started + REFILL_WINDOW_SECONDS)
            return revoked
        finally:
            if not handed_off:
                await session.close()

    async def _write(
        self,
        user_id: str,
        redis_now_ms: int,
        state: UserState,
        jtis: Iterable[tuple[str, dt.datetime]],
        families: Iterable[UUID],
    ) -> None:
        pairs: list[str] = ["s", _state(*state)]
        for jti, _ in jtis:
            pairs += [f"j:{jti}", "1"]
        for family in families:
            pairs += [f"f:{family}", "1"]
        deadline = redis_now_ms + int(REFILL_WINDOW_SECONDS * 1000)
        await self._refill(keys=[self.key(user_id)], args=[deadline, USER_STATE_TTL, *pairs])

    async def _redis_clock(self) -> int | None:
        """Redis's clock in ms, or None (no refill) when Redis does not answer."""
        try:
            seconds, micros = await self._redis.time()
        except RedisError:
            return None
        return int(seconds) * 1000 + int(micros) // 1000

    def _hold(self, session: AsyncSession, *, until: float) -> None:
        async def release() -> None:
            try:
                await asyncio.sleep(max(0.0, until - time.monotonic()))
            finally:
                await session.close()

        task = asyncio.get_running_loop().create_task(release())
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    # ---- the revocation protocol ------------------------------------------------------------

    @staticmethod
    async def lock(session: AsyncSession, user_id: UUID) -> UserState | None:
        """Step 1: lock the user's row for this transaction; None when the user is gone.

        Every revocation takes this lock before its other writes, and every session-opening
        write (login, refresh rotation, refill) takes a share lock on the same row, so the
        two never interleave.
        """
        row = await UserStateRepository(session=session).lock_for_update(user_id)
        return None if row is None else UserState(*row)

    @staticmethod
    async def revoke_everything(session: AsyncSession, user_id: UUID) -> int:
        """Every token of the user dies: tokens_valid_after moves to now and every refresh
        family is revoked. Returns how many sessions were still live. The caller holds the lock."""
        now = dt.datetime.now(dt.UTC)
        await UserStateRepository(session=session).set_tokens_valid_after(user_id, now)
        return await RefreshTokenRepository(session=session).revoke_user(user_id, now)

    @staticmethod
    async def revoke_families(session: AsyncSession, families: Iterable[UUID]) -> None:
        now = dt.datetime.now(dt.UTC)
        refresh = RefreshTokenRepository(session=session)
        for family in families:
            await refresh.revoke_family(family, now)

    async def commit(self, session: AsyncSession, user_id: UUID | str) -> None:
        """Steps 3 and 4: drop the user's cached state, then commit.

        Raises:
            RedisError: Redis did not take the delete; the transaction was rolled back.
        """
        try:
            await self._redis.delete(self.key(str(user_id)))
        except RedisError:
            await session.rollback()
            raise
        await session.commit()

    async def close(self) -> None:
        """Let held refill locks go at shutdown."""
        for task in list(self._held):
            task.cancel()
