"""The verify hot path: an access token's signature and claims in process, then the per-user
rate limit, the revocation state and the activity mark in one Lua script, one round trip.

Two things keep it cheap:
- a bounded cache of verified tokens -> claims: a token seen before skips the signature
  check (only its expiry is re-read); revocation is never cached, so it stays exact;
- the script goes over a lean multiplexed connection (lib/redis/lean.py), not redis-py.

The script assumes one Redis (not Cluster): its keys live in different hash slots.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.lib.crypto.tokens import AccessClaims, TokenExpiredError, TokenInvalidError, TokenService
from auth_service.lib.errors import TokenExpired, TokenInvalid, TokenRevoked
from auth_service.lib.redis.activity import ActivityTracker
from auth_service.lib.redis.lean import LeanRedis, Script
from auth_service.lib.redis.ratelimit import GCRA_FUNCTION
from observability import metrics

__all__ = ["ClaimsCache", "ScriptRunner", "TokenVerifier", "script_runner"]

# KEYS: the user's revocation hash, activity HLL[, rate-limit key]
# ARGV: user id, HLL ttl, jti field, session field[, period ms, limit]
# Returns {gcra reply or {}, {state, jti mark, session mark}[, Redis clock in ms when the
# hash has no state: the refill's deadline starts there]}; a refusal returns {gcra reply} alone.
VERIFY_SCRIPT = Script(
    GCRA_FUNCTION
    + """
local limit = {}
if #KEYS == 3 then
  limit = gcra(KEYS[3], ARGV[5], ARGV[6], 1)
  if limit[1] == 0 then return {limit} end
end
redis.call('PFADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local marks = redis.call('HMGET', KEYS[1], 's', ARGV[3], ARGV[4])
if not marks[1] then
  local t = redis.call('TIME')
  return {limit, marks, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
end
return {limit, marks}
"""
)


class ScriptRunner(Protocol):
    async def evalsha(self, script: Script, keys: tuple[str, ...], args: tuple[str | int, ...]) -> Any: ...


class _RedisPyScripts:
    """The same interface over redis-py, for URLs the lean client does not speak (rediss://)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def evalsha(self, script: Script, keys: tuple[str, ...], args: tuple[str | int, ...]) -> Any:
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[misc,arg-type]
        except NoScriptError:
            return await self._redis.eval(script.body, len(keys), *keys, *args)  # type: ignore[misc,arg-type]


def script_runner(url: str, redis: Redis, *, timeout: float) -> tuple[ScriptRunner, LeanRedis | None]:
    """The lean connection when the URL allows it, else redis-py; the second item is what to close."""
    if LeanRedis.supports(url):
        lean = LeanRedis(url, timeout=timeout)
        return lean, lean
    return _RedisPyScripts(redis), None


class ClaimsCache:
    """Verified access tokens -> their claims, at most `size` of them (oldest out first).

    Keyed by the whole token, so a hit means these exact bytes passed the signature and
    claim checks before; only `exp` can change its answer, and it is checked on every hit.
    """

    MAX_TOKEN_LENGTH = 2048  # longer tokens are verified every time rather than hold memory

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[str, AccessClaims] = {}

    def get(self, token: str) -> AccessClaims | None:
        claims = self._entries.get(token)
        if claims is not None and claims.exp <= time.time():
            del self._entries[token]
            raise TokenExpiredError
        return claims

    def put(self, token: str, claims: AccessClaims) -> None:
        if self._size <= 0 or len(token) > self.MAX_TOKEN_LENGTH:
            return
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[token] = claims


class TokenVerifier:
    """Verifies access tokens for /verify and every authenticated endpoint."""

    def __init__(
        self,
        tokens: TokenService,
        revocation: RevocationStore,
        limits: EndpointLimits,
        activity: ActivityTracker,
        scripts: ScriptRunner,
        *,
        cache_size: int = 4096,
    ) -> None:
        self._tokens = tokens
        self._revocation = revocation
        self._limits = limits
        self._activity = activity
        self._scripts = scripts
        self._cache_size = cache_size
        self._cache = ClaimsCache(cache_size)
        self._keys_generation = tokens.generation

    def claims_of(self, token: str) -> AccessClaims:
        """Signature and claims, from the cache when this token was verified before (and the
        keys have not changed since: a retired key's tokens must fail at once).

        Raises:
            TokenExpiredError, TokenInvalidError.
        """
        if self._tokens.generation != self._keys_generation:
            self._cache = ClaimsCache(self._cache_size)
            self._keys_generation = self._tokens.generation
        claims = self._cache.get(token)
        if claims is None:
            claims = self._tokens.verify_access(token)
            self._cache.put(token, claims)
        return claims

    async def verify(self, token: str, *, ip: str, endpoint: str) -> AccessClaims:
        """The claims of a live access token.

        Args:
            token: the Bearer token.
            ip: the client, for the per-IP limit on bad tokens.
            endpoint: "verify" or another authenticated endpoint (its per-user limit).

        Raises:
            TokenExpired, TokenInvalid, TokenRevoked, RateLimited.
        """
        started = time.perf_counter()
        try:
            claims = self.claims_of(token)
        except (TokenExpiredError, TokenInvalidError) as exc:
            # Bad tokens cost no I/O to reject, but they still count against the client's IP.
            await self._limits.public(ip, endpoint)
            raise (TokenExpired if isinstance(exc, TokenExpiredError) else TokenInvalid)() from None
        check = self._limits.authenticated(claims.sub, verify=endpoint == "verify") if self._limits.enabled else None
        keys: tuple[str, ...] = (self._revocation.key(claims.sub), self._activity.current_key())
        args: tuple[str | int, ...] = (claims.sub, self._activity.ttl, *self._revocation.fields(claims))
        if check is not None:
            keys += (check.key,)
            args += (check.rule.period_seconds * 1000, check.rule.limit)
        marks: list[bytes | None] | None
        redis_now_ms: int | None = None
        try:
            reply = await self._scripts.evalsha(VERIFY_SCRIPT, keys, args)
        except RedisError:
            if check is not None:
                self._limits.redis_failed(endpoint)
            marks = None
        else:
            if check is not None:
                self._limits.enforce(self._limits.limiter.read(reply[0], check), endpoint)
            marks = reply[1]
            if len(reply) > 2:
                redis_now_ms = int(reply[2])
        revoked = await self._revocation.decide(claims, marks, redis_now_ms)
        metrics.token_validation_duration.record(time.perf_counter() - started)
        if revoked:
            raise TokenRevoked
        return claims
