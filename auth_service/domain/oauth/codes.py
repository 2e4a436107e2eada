"""Authorization codes: 60 s, single use, bound to client, redirect URI and PKCE challenge, in
Redis (stored under their SHA-256; the code itself never is).

A code is redeemed by one script that reads and deletes it and leaves a `used` mark naming the
session the exchange is about to open. A second use of the code finds the mark instead: RFC
6749 §4.1.2 says what the first use issued must then be revoked. The two may race, so the mark
has three states, and every transition is one script:

- `open:<family>`: the first exchange won the code and is opening its session;
- `done:<family>`: its session is open (the first exchange `settle`d); a second use revokes it;
- `revoke:<family>`: a second use came while the session was still opening; the first exchange
  finds this when it settles, revokes its own session and answers invalid_grant.

Either way the session dies, whichever request gets where first.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from auth_service.lib.errors import ServiceUnavailable

__all__ = ["CODE_TTL", "CodeGrant", "CodeStore", "Redeemed"]

CODE_TTL = 60
_USED_TTL = 600  # a replay this late still finds what to revoke

# KEYS: the code, its used mark. ARGV: the family the exchange will open, the mark's TTL.
# {1, grant}: redeemed; {2, mark}: used before (the mark as it was); {0}: unknown or expired.
_REDEEM = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 'open:' .. ARGV[1], 'EX', ARGV[2])
  return {1, v}
end
local u = redis.call('GET', KEYS[2])
if not u then return {0} end
if string.sub(u, 1, 5) == 'open:' then
  redis.call('SET', KEYS[2], 'revoke:' .. string.sub(u, 6), 'KEEPTTL')
end
return {2, u}
"""

# KEYS: the used mark. 1: a second use asked for the revocation meanwhile; 0: settled.
_SETTLE = """
local u = redis.call('GET', KEYS[1])
if u and string.sub(u, 1, 7) == 'revoke:' then return 1 end
if u then redis.call('SET', KEYS[1], 'done:' .. string.sub(u, 6), 'KEEPTTL') end
return 0
"""


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    user_id: str
    browser_session: str  # the sign-in session (family) it was issued from
    scope: str
    nonce: str | None
    auth_time: int
    amr: list[str]
    tokens_valid_after: str | None  # the user's, when authorized: a revocation since kills the code
    ip: str
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Redeemed:
    outcome: Literal["redeemed", "reused", "unknown"]
    grant: CodeGrant | None = None
    # A reuse: the session the first exchange opened, to revoke (None: it revokes itself).
    family_to_revoke: uuid.UUID | None = None


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class CodeStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._redeem = redis.register_script(_REDEEM)
        self._settle = redis.register_script(_SETTLE)

    def _keys(self, code: str) -> list[str]:
        digest = _digest(code)
        return [f"{self._prefix}:oauth:code:{digest}", f"{self._prefix}:oauth:used:{digest}"]

    async def issue(self, grant: CodeGrant) -> str:
        code = secrets.token_urlsafe(32)
        try:
            await self._redis.set(self._keys(code)[0], json.dumps(asdict(grant)), ex=CODE_TTL)
        except RedisError:
            raise ServiceUnavailable from None
        return code

    async def redeem(self, code: str, family_id: uuid.UUID) -> Redeemed:
        try:
            reply: Any = await self._redeem(keys=self._keys(code), args=[str(family_id), _USED_TTL])
        except RedisError:
            raise ServiceUnavailable from None
        if reply[0] == 1:
            data = json.loads(reply[1])
            return Redeemed("redeemed", CodeGrant(**data))
        if reply[0] == 2:
            state, _, family = (reply[1].decode() if isinstance(reply[1], bytes) else reply[1]).partition(":")
            # "open": the first exchange will see our revoke mark; "done": its session is open, revoke it.
            return Redeemed("reused", family_to_revoke=uuid.UUID(family) if state == "done" else None)
        return Redeemed("unknown")

    async def settle(self, code: str) -> bool:
        """The exchange's session is open; False when a second use of the code came meanwhile
        (the caller revokes the session it just opened)."""
        try:
            revoke = await self._settle(keys=self._keys(code)[1:])
        except RedisError:
            return False  # cannot tell: the safe answer
        return not revoke
