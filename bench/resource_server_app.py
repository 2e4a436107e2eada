"""A bare Litestar resource server that verifies our access tokens locally, as a relying API
would: the JWK Set fetched once at start from BENCH_JWKS_URL, each token checked with joserfc
(signature by `kid`, ES256 pinned; `exp`, `iss`, `aud` required). `/open` is the same route
without the check, the baseline in the same process; `/protected-cached` keeps the claims of a
token it verified (bounded, each entry until the token's `exp`), as a resource server that sees
the same tokens again may."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Litestar, Request, get
from litestar.exceptions import NotAuthorizedException

_KEYS = KeySet.import_key_set(httpx.get(os.environ["BENCH_JWKS_URL"], timeout=10).json())
_CLAIMS = jwt.JWTClaimsRegistry(
    exp={"essential": True},
    iss={"essential": True, "value": os.environ["BENCH_ISSUER"]},
    aud={"essential": True, "value": os.environ["BENCH_AUDIENCE"]},
)


def _body(sub: object) -> dict[str, object]:
    return {"valid": True, "sub": sub, "roles": ["user"]}


@get("/open")
async def open_route(request: Request[Any, Any, Any]) -> dict[str, object]:
    request.headers.get("authorization")  # read, as the checked route does
    return _body("00000000-0000-0000-0000-000000000000")


def _bearer(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException()
    return token


def _verified(token: str) -> dict[str, Any]:
    try:
        decoded = jwt.decode(token, _KEYS, algorithms=["ES256"])
        _CLAIMS.validate(decoded.claims)
    except (JoseError, ValueError):
        raise NotAuthorizedException() from None
    return dict(decoded.claims)


@get("/protected")
async def protected(request: Request[Any, Any, Any]) -> dict[str, object]:
    return _body(_verified(_bearer(request))["sub"])


_SEEN: dict[str, dict[str, Any]] = {}
_SEEN_MAX = 10_000


@get("/protected-cached")
async def protected_cached(request: Request[Any, Any, Any]) -> dict[str, object]:
    token = _bearer(request)
    claims = _SEEN.get(token)
    if claims is None or claims["exp"] <= time.time():
        claims = _verified(token)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[token] = claims
    return _body(claims["sub"])


app = Litestar([open_route, protected, protected_cached], logging_config=None)
