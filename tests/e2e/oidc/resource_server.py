"""A resource server of somebody else's: it accepts our ES256 access tokens knowing only the JWKS
URL, the issuer and the audience (no shared secret, no call to us but the JWKS), the way any
JOSE library's remote key set does it: the key set cached for its Cache-Control max-age, and
fetched again when a token names a kid it does not hold (at most once per `cooldown`, so forged
kids cannot make it hammer the JWKS)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

__all__ = ["JwksResourceServer", "TokenRefused"]


class TokenRefused(Exception):
    """The token is not one this resource server accepts; the message says why."""


class JwksResourceServer:
    def __init__(
        self,
        jwks_uri: str,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ("ES256",),
        cooldown: float = 1.0,
    ) -> None:
        self.jwks_uri = jwks_uri
        self.algorithms = list(algorithms)
        self.cooldown = cooldown
        self.fetches = 0
        self.kids: set[str] = set()
        self._keys = KeySet([])
        self._fetched_at = float("-inf")
        self._fresh_until = float("-inf")
        self._claims = JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )

    async def refresh(self) -> None:
        """Fetch the JWK Set (what an expired cache does)."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(self.jwks_uri)
        answer.raise_for_status()
        self._keys = KeySet.import_key_set(answer.json())
        self.kids = {str(key.kid) for key in self._keys.keys}
        self.fetches += 1
        self._fetched_at = time.monotonic()
        max_age = re.search(r"max-age=(\d+)", answer.headers.get("cache-control", ""))
        self._fresh_until = self._fetched_at + (int(max_age.group(1)) if max_age else 0)

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of an access token this server accepts, with its header's `kid` as `_kid`.

        Raises:
            TokenRefused: malformed, unknown key, bad signature, wrong algorithm or claims.
        """
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise TokenRefused(f"malformed: {exc}") from None
        kid = str(header.get("kid"))
        now = time.monotonic()
        stale = now >= self._fresh_until
        if stale or (kid not in self.kids and now - self._fetched_at >= self.cooldown):
            await self.refresh()
        if kid not in self.kids:
            raise TokenRefused(f"no published key {kid}")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=self.algorithms)
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise TokenRefused(f"{type(exc).__name__}: {exc}") from None
        return {**decoded.claims, "_kid": kid}
