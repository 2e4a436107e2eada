"""Pending logins: the state between a right password and its second step, in Redis.

A pending login is named by an opaque `mfa_token` (256 random bits) that is stored only as its
SHA-256: a Redis dump gives nobody a usable token. It is bound to its user and to the IP of the
login, lives MFA_TOKEN_TTL_SECONDS, and allows MFA_MAX_ATTEMPTS proofs. Every rule that must not
race is one Redis command or script:

- `take`: the IP check and the attempt count are one script (HINCRBY under the same call that
  read the login), so a burst of concurrent guesses on one token gets exactly the allowance;
- `consume`: single use is the reply of one DEL: of two right proofs at once, only the caller
  whose DEL removed the key opens a session;
- replay marks of TOTP steps (`ReplayMarks`) are SET NX; PostgreSQL's `last_used_step` stays the
  truth (a flushed Redis cannot reopen a used code), the mark only spares it the write.

PostgreSQL stays the truth for factors: nothing here says which factors a user has.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from auth_service.lib.errors import ServiceUnavailable
from auth_service.lib.redis.lean import Script
from auth_service.lib.redis.ratelimit import RateLimiter

__all__ = ["ENROLL", "TOKEN_PREFIX", "PendingLogin", "PendingLogins", "ReplayMarks", "TakenLogin", "token_digest"]

log = structlog.get_logger()

ENROLL = "enroll"  # the method of a login that must enrol a factor first (MFA_REQUIRED_ROLES)
TOKEN_PREFIX = "mfa_"  # tells an mfa_token from a JWT at a glance (no dots)
_REPLAY_TTL = 150  # seconds: longer than the ±1 step window a code is accepted in

# KEYS: the pending login. ARGV: the caller's IP, the attempts allowed.
# Returns {0}: unknown, used, expired or dead; {-1}: another IP (nothing counted);
# {1, attempt, user, username, user agent, tokens_valid_after, methods}.
_TAKE = Script(
    """
local v = redis.call('HMGET', KEYS[1], 'user', 'ip', 'username', 'ua', 'tva', 'methods')
if not v[1] then return {0} end
if v[2] ~= ARGV[1] then return {-1} end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return {0}
end
return {1, n, v[1], v[3], v[4], v[5], v[6]}
"""
)


# KEYS: the pending login. ARGV: its new methods, comma-separated.
_SET_METHODS = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], 'methods', ARGV[1]) end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A login whose password was right, waiting for its second factor (or its enrolment)."""

    user_id: uuid.UUID
    username: str  # as typed at login: the per-username failure budget is keyed by it
    ip: str
    user_agent: str | None
    tokens_valid_after: dt.datetime | None  # a revocation since the password check kills the login
    methods: tuple[str, ...]

    @property
    def enrolling(self) -> bool:
        return self.methods == (ENROLL,)


@dataclass(frozen=True, slots=True)
class TakenLogin:
    """A pending login one proof was taken for: `attempt` of the allowed ones."""

    login: PendingLogin
    attempt: int
    key: str


def token_digest(token: str) -> str:
    """What stands for an mfa_token in Redis: its SHA-256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _when(text: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class PendingLogins:
    """The pending logins of every instance, in the shared Redis.

    Args:
        limiter: its connection and script loading (the limits' own, also when limits are off).
        prefix: REDIS_KEY_PREFIX.
        ttl: MFA_TOKEN_TTL_SECONDS.
        max_attempts: MFA_MAX_ATTEMPTS.
    """

    def __init__(self, limiter: RateLimiter, *, prefix: str, ttl: int, max_attempts: int) -> None:
        self._limiter = limiter
        limiter.register(_TAKE, _SET_METHODS)
        self._prefix = prefix
        self.ttl = ttl
        self.max_attempts = max_attempts

    def _key(self, token: str) -> str:
        return f"{self._prefix}:mfa:{token_digest(token)}"

    async def create(self, login: PendingLogin) -> str:
        """Store a pending login; returns its mfa_token (shown once, never stored).

        Raises:
            ServiceUnavailable: Redis is down (the login cannot go on without its second step).
        """
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = self._key(token)
        fields: list[str | int] = [
            "user",
            str(login.user_id),
            "ip",
            login.ip,
            "username",
            login.username,
            "ua",
            login.user_agent or "",
            "tva",
            login.tokens_valid_after.isoformat() if login.tokens_valid_after else "",
            "methods",
            ",".join(login.methods),
            "n",
            0,
        ]
        try:
            await self._limiter.run(("HSET", key, *fields), ("EXPIRE", key, self.ttl))
        except RedisError:
            log.warning("mfa.redis_unavailable", step="challenge")
            raise ServiceUnavailable from None
        return token

    async def take(self, token: str, ip: str) -> TakenLogin | None:
        """Count one proof against the token and return its login; None when the token is not a
        live one for this IP (unknown, used, expired, out of attempts, or from another IP).

        Raises:
            ServiceUnavailable: Redis is down.
        """
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        key = self._key(token)
        try:
            (reply,) = await self._limiter.run(self._limiter.script_command(_TAKE, (key,), (ip, self.max_attempts)))
        except RedisError:
            raise ServiceUnavailable from None
        if int(reply[0]) != 1:
            if int(reply[0]) == -1:
                log.info("mfa.token_other_ip", ip=ip)
            return None
        _, attempt, user, username, ua, tva, methods = reply
        login = PendingLogin(
            uuid.UUID(_text(user)),
            _text(username),
            ip,
            _text(ua) or None,
            _when(_text(tva)),
            tuple(m for m in _text(methods).split(",") if m),
        )
        return TakenLogin(login, int(attempt), key)

    async def peek(self, token: str, ip: str) -> PendingLogin | None:
        """The live pending login of `token` from `ip`, counting nothing (the enrolment endpoints
        take it as their credential)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        try:
            (values,) = await self._limiter.run(
                ("HMGET", self._key(token), "user", "ip", "username", "ua", "tva", "methods")
            )
        except RedisError:
            raise ServiceUnavailable from None
        user, bound_ip, username, ua, tva, methods = (_text(v) for v in values)
        if not user or bound_ip != ip:
            return None
        return PendingLogin(
            uuid.UUID(user), username, ip, ua or None, _when(tva), tuple(m for m in methods.split(",") if m)
        )

    async def failed(self, taken: TakenLogin) -> None:
        """A wrong proof: the token dies with its last allowed attempt."""
        if taken.attempt >= self.max_attempts:
            await self._best_effort(("DEL", taken.key))

    async def consume(self, taken: TakenLogin) -> bool:
        """Spend the token; True only for the one caller whose DEL removed it."""
        try:
            (removed,) = await self._limiter.run(("DEL", taken.key))
        except RedisError:
            raise ServiceUnavailable from None
        return int(removed) == 1

    async def set_methods(self, token: str, methods: tuple[str, ...]) -> None:
        """After an enrolment, the login's methods are the new factor's (the login then finishes
        with POST /auth/mfa and a fresh code)."""
        key = self._key(token)
        # Only on a live login: an HSET on an expired key would make a new one with no TTL.
        await self._best_effort(self._limiter.script_command(_SET_METHODS, (key,), (",".join(methods),)))

    async def _best_effort(self, command: tuple[bytes | str | int, ...]) -> None:
        try:
            await self._limiter.run(command)
        except RedisError:
            log.warning("mfa.redis_unavailable", step="bookkeeping")


class ReplayMarks:
    """The fast path of TOTP replay refusal: one SET NX per accepted (user, step). A mark that
    exists refuses the code without a database write; a missing one (flushed, another Redis)
    decides nothing: the conditional UPDATE of `last_used_step` does."""

    def __init__(self, limiter: RateLimiter, *, prefix: str) -> None:
        self._limiter = limiter
        self._prefix = prefix

    async def first_use(self, user_id: uuid.UUID, authenticator: bytes, step: int) -> bool:
        """False when this step of this authenticator (its stored ciphertext: a re-enrolment is
        another one) was accepted before, per Redis; True otherwise, also when Redis cannot tell."""
        which = hashlib.sha256(authenticator).hexdigest()[:16]
        key = f"{self._prefix}:rl:{{{user_id}}}:totp-step:{which}:{step}"
        try:
            (reply,) = await self._limiter.run(("SET", key, 1, "NX", "EX", _REPLAY_TTL))
        except RedisError:
            return True
        return reply is not None
