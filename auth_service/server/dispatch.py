"""GET /api/v1/auth/verify (and the published documents) answered on raw ASGI, in front of
Litestar's router.

Verify is the hot path, and on it Litestar's per-request machinery (router, Request object,
exception middleware, three layers of send wrappers) cost about as much as the verification
itself. The fast path keeps everything a client or an operator can see the same:

- the request context: request id, server span, HTTP histogram (RequestContextMiddleware);
- the same claims check as every authenticated endpoint (Authenticator.claims in domain/auth/deps.py) and the
  same body as the Litestar handler (verify_body);
- the app's own before_send hooks for the headers (request id, nosniff, rate-limit headers,
  charset, HSTS, no server banner);
- errors rendered by the app's exception handlers, so they are the one envelope.

The Litestar route stays: it describes verify in the OpenAPI document and answers what the
fast path leaves to it (other methods, a trailing slash, CORS requests when CORS_ORIGINS is set).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from auth_service.domain.auth.controllers import verify_body
from auth_service.domain.oauth.well_known import DOCUMENT_PATHS, document_bytes
from auth_service.server.exception_handlers import exception_handler_for
from auth_service.server.request_context import RequestContextMiddleware

if TYPE_CHECKING:
    from litestar import Litestar

__all__ = ["FastDocuments", "FastVerify"]

Hook = Callable[[Message, Scope], Awaitable[None]]


class FastVerify:
    """The verify endpoint as a plain ASGI app over the Litestar app's state and hooks.

    Args:
        app: the Litestar app (its state holds the resources once the lifespan has run).
        before_send: the app's before_send hooks, applied to every response sent here.
        path: the path it answers (GET only).
        cors: CORS is on: requests with an Origin header go to Litestar's CORS middleware.
    """

    def __init__(self, app: Litestar, before_send: Sequence[Hook], *, path: str, cors: bool) -> None:
        self._app = app
        self._hooks = tuple(before_send)
        self._path = path
        self._cors = cors
        self._handle = RequestContextMiddleware(self._respond)

    def takes(self, scope: Scope) -> bool:
        """This request is ours (else Litestar's)."""
        if scope["type"] != ScopeType.HTTP or scope["path"] != self._path or scope.get("method") != "GET":
            return False
        return not (self._cors and any(name.lower() == b"origin" for name, _ in scope["headers"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_template"] = self._path  # type: ignore[typeddict-unknown-key]
        await self._handle(scope, receive, send)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            claims = await self._app.state.resources.authenticator.claims(scope, "verify")
        except Exception as exc:  # every error leaves through the app's exception handlers
            await self._error(scope, receive, send, exc)
            return
        body = verify_body(claims)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        for hook in self._hooks:
            await hook(start, scope)
        await send(start)
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        await _answer_error(self._hooks, scope, receive, send, exc)


async def _answer_error(hooks: Sequence[Hook], scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """`exc` through the app's exception handlers (the one envelope), with the hooks' headers."""
    request: Request[Any, Any, Any] = Request(scope, receive)
    response = exception_handler_for(exc)(request, exc)

    async def send_with_hooks(message: Message) -> None:
        for hook in hooks:
            await hook(message, scope)
        await send(message)

    await response.to_asgi_response(None, request)(scope, receive, send_with_hooks)


class FastDocuments:
    """GET of the published documents (JWKS, discovery, RFC 8414), answered like verify: in front
    of the router, with the same request context and before_send hooks. They are the requests a
    fleet of resource servers and relying parties makes most, and their bytes are built already
    (domain/oauth/well_known.py); the Litestar routes stay for the API document, HEAD, CORS."""

    def __init__(self, app: Litestar, before_send: Sequence[Hook], *, cors: bool) -> None:
        self._app = app
        self._hooks = tuple(before_send)
        self._paths = DOCUMENT_PATHS
        self._cors = cors
        self._handle = RequestContextMiddleware(self._respond)

    def takes(self, scope: Scope) -> bool:
        if scope["type"] != ScopeType.HTTP or scope["path"] not in self._paths or scope.get("method") != "GET":
            return False
        return not (self._cors and any(name.lower() == b"origin" for name, _ in scope["headers"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_template"] = scope["path"]  # type: ignore[typeddict-unknown-key]
        await self._handle(scope, receive, send)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body, etag, media_type, cache = document_bytes(self._app, scope["path"])
        except Exception as exc:
            await _answer_error(self._hooks, scope, receive, send, exc)
            return
        presented = next((value for name, value in scope["headers"] if name.lower() == b"if-none-match"), None)
        headers = [(b"etag", etag), (b"cache-control", cache)]
        if presented == etag:
            status, body = 304, b""
        else:
            status = 200
            headers += [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
        for hook in self._hooks:
            await hook(start, scope)
        await send(start)
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
