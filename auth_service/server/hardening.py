"""Web hardening that applies to every response: charset on text, HSTS over TLS, a correct
`Allow` on OPTIONS, CORS for configured origins only, and no tokens in query strings.

Kept apart from the request context (ids, limits, metrics) so each stays small; both run as
`before_send` hooks, so errors the router raises (404, 405) get the same headers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from litestar.config.cors import CORSConfig
from litestar.types import Message, Scope

from auth_service.settings import Settings

__all__ = ["cors_config", "response_hardening", "with_charset"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Hook = Callable[[Message, Scope], Awaitable[None]]

_JSON = b"application/json"
_JSON_WITH_CHARSET = b"application/json; charset=utf-8"
# RFC 6750 §2.3 names this parameter; we never read it, and refuse requests that send it.


def with_charset(content_type: bytes) -> bytes:
    """`application/json` → `application/json; charset=utf-8`, for JSON and text types without
    one; repeated charset parameters collapse to the first. Binary types pass unchanged."""
    if content_type == _JSON:  # the common case, without parsing
        return _JSON_WITH_CHARSET
    media, *params = (part.strip() for part in content_type.split(b";"))
    kept: list[bytes] = []
    has_charset = False
    for param in params:
        if not param:
            continue
        if param.lower().startswith(b"charset="):
            if has_charset:
                continue
            has_charset = True
        kept.append(param)
    lowered = media.lower()
    textual = lowered.startswith(b"text/") or lowered == _JSON or lowered.endswith(b"+json")
    if textual and not has_charset:
        kept.append(b"charset=utf-8")
    return b"; ".join([media, *kept])


def _over_tls(scope: Scope, trusted: Sequence[Network]) -> bool:
    """Served over TLS: directly (uvicorn with a certificate), or by a trusted proxy that says so."""
    if scope.get("scheme") == "https":
        return True
    if not trusted:
        return False
    # Every line, in order: a proxy may append its own line rather than extend the client's.
    lines = [value for name, value in scope.get("headers", ()) if name == b"x-forwarded-proto"]
    client = scope.get("client")
    if not lines or not client:
        return False
    try:
        peer = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    # The right-most value is the one our proxy wrote; anything left of it came from the client.
    proto = b",".join(lines)
    return any(peer in network for network in trusted) and proto.split(b",")[-1].strip().lower() == b"https"


def _allowed_methods(scope: Scope, cache: dict[str, bytes]) -> bytes | None:
    """Every method of the matched route. Litestar's automatic OPTIONS handler lists only the
    methods of the first handler registered on a path (GET /not-me was missing)."""
    paths = getattr(scope.get("route_handler"), "paths", None)
    if not paths or len(paths) != 1:
        return None
    path = next(iter(paths))  # the route's full path, as the app's route map keys it
    if path not in cache:
        methods = {str(method) for method in scope["app"].route_handler_method_map.get(path, {})}
        cache[path] = ", ".join(sorted({m for m in methods if m.isupper()} | {"OPTIONS"})).encode()
    return cache[path]


def response_hardening(settings: Settings) -> Hook:
    """The `before_send` hook: charset on every textual Content-Type, HSTS when the request came
    over TLS (HSTS_MAX_AGE; 0 turns it off), and the full `Allow` on OPTIONS answers."""
    trusted = settings.app.trusted_proxy_networks
    hsts = f"max-age={settings.app.hsts_max_age}; includeSubDomains".encode() if settings.app.hsts_max_age > 0 else b""
    allow_cache: dict[str, bytes] = {}

    async def harden(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers: list[tuple[bytes, bytes]] = []
        for name, value in message.get("headers", ()):
            lowered = name.lower()
            if lowered == b"content-type":
                value = with_charset(value)
            elif lowered == b"allow" and scope.get("method") == "OPTIONS":
                value = _allowed_methods(scope, allow_cache) or value
            elif lowered in (b"server", b"x-powered-by", b"strict-transport-security"):
                continue
            headers.append((name, value))
        if hsts and _over_tls(scope, trusted):
            headers.append((b"strict-transport-security", hsts))
        message["headers"] = headers

    return harden


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for the configured origins only (none: CORS off). Browsers may send what our API
    reads and read what it returns; cookies play no part (Bearer tokens), so no credentials."""
    origins = settings.app.cors_origin_list
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=[
            "X-Request-ID",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
        ],
        allow_credentials=False,
        max_age=600,
    )
