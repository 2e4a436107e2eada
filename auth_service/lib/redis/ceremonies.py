"""WebAuthn ceremonies between their two requests: the challenge the options sent, kept in Redis
for a short while and taken back exactly once.

A ceremony is single-use by construction: `take` is one GETDEL, so of two requests answering the
same options only one gets the challenge (the other finds nothing, as for an expired one), also
across API instances. Nothing secret is stored: a challenge only has to be unpredictable and
spent once, and the options already showed it to the browser.

Keys: `<prefix>:webauthn:{<subject>}:<kind>:<id>`, the hash tag on the user (or on the
ceremony id when there is no user yet, the passwordless login) so a Redis Cluster keeps each
ceremony in one slot.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from auth_service.lib.errors import ServiceUnavailable

__all__ = ["CEREMONY_TTL_SECONDS", "Ceremony", "CeremonyStore", "new_ceremony_id"]

CEREMONY_TTL_SECONDS = 120  # the options' lifetime: a user picks a passkey and touches a sensor
_ID_BYTES = 24


class Ceremony(msgspec.Struct, frozen=True):
    """What a ceremony's second request needs of its first."""

    challenge: bytes
    user_id: str | None = None  # who it was for (None: a passwordless login, anyone's passkey)
    name: str | None = None  # a registration's chosen name


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Ceremony).decode


def new_ceremony_id() -> str:
    """An opaque, unguessable ceremony id (URL-safe)."""
    return secrets.token_urlsafe(_ID_BYTES)


class CeremonyStore:
    """The pending ceremonies, on the service's Redis.

    Args:
        redis: the shared Redis client.
        prefix: REDIS_KEY_PREFIX.
        ttl: seconds a ceremony lives.
    """

    def __init__(self, redis: Redis, prefix: str, ttl: int = CEREMONY_TTL_SECONDS) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl = ttl

    def _key(self, kind: str, subject: str, ceremony_id: str) -> str:
        return f"{self._prefix}:webauthn:{{{subject}}}:{kind}:{ceremony_id}"

    async def put(self, kind: str, subject: str, ceremony_id: str, ceremony: Ceremony) -> None:
        """Keep `ceremony` for `ttl` seconds (a second put under the same id replaces it).

        Raises:
            ServiceUnavailable: Redis is down (no ceremony without its challenge kept).
        """
        try:
            await self._redis.set(self._key(kind, subject, ceremony_id), _encode(ceremony), ex=self.ttl)
        except RedisError:
            raise ServiceUnavailable from None

    async def take(self, kind: str, subject: str, ceremony_id: str) -> Ceremony | None:
        """The ceremony, removed in the same command; None when unknown, used or expired.

        Raises:
            ServiceUnavailable: Redis is down.
        """
        if not ceremony_id or len(ceremony_id) > 128:
            return None
        try:
            raw: Any = await self._redis.getdel(self._key(kind, subject, ceremony_id))
        except RedisError:
            raise ServiceUnavailable from None
        if raw is None:
            return None
        try:
            return _decode(raw)
        except msgspec.ValidationError:
            return None
