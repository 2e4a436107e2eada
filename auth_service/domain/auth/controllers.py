"""HTTP endpoints of /api/v1/auth: thin, they translate and delegate to AuthService."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, JSONBody
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from auth_service.domain.auth.deps import provide_auth_service, provide_client
from auth_service.domain.auth.schemas import LoginRequest, LogoutRequest, RefreshRequest, TokenPair, VerifyResponse
from auth_service.domain.auth.service import AuthService, ClientInfo, IssuedTokens
from auth_service.domain.sessions.deps import provide_session_service
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.http import OPTIONAL_BODY, error_responses, require_json_body
from auth_service.lib.queue import JobQueue, enqueue_all

__all__ = ["VERIFY_PATH", "AuthController", "verify_body"]

VERIFY_PATH = "/api/v1/auth/verify"  # the hot path: its traces are sampled (TRACE_VERIFY_SAMPLE_RATIO)

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_encode = msgspec.json.Encoder().encode


def verify_body(claims: AccessClaims) -> bytes:
    """The JSON body of a 200 from verify."""
    return _encode(
        VerifyResponse(
            valid=True,
            user_id=claims.sub,
            username=claims.username,
            roles=claims.roles,
            expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.exp)),
        )
    )


def _pair(issued: IssuedTokens, queue: JobQueue | None = None) -> Response[TokenPair]:
    body = TokenPair(
        access_token=issued.access_token,
        expires_in=issued.access_expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )
    # Notifications are enqueued after the response is sent: a slow or dead queue never delays a login.
    background = BackgroundTask(enqueue_all, queue, issued.jobs) if queue is not None and issued.jobs else None
    return Response(body, status_code=HTTP_200_OK, headers=_NO_STORE, background=background)


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]
    dependencies = {"auth": Provide(provide_auth_service), "client": Provide(provide_client, sync_to_thread=False)}

    @post(
        "/login",
        before_request=require_json_body,
        opt={"rate_limit": "login"},
        status_code=HTTP_200_OK,
        summary="Log in with username and password",
        description="Returns an access token and a refresh token. Unknown user, wrong password and "
        "disabled account all answer AUTH_INVALID_CREDENTIALS.",
        responses=error_responses(400, 401, 413, 415, 429, 503),
    )
    async def login(
        self,
        auth: NamedDependency[AuthService],
        client: NamedDependency[ClientInfo],
        queue: NamedDependency[JobQueue],
        data: Annotated[
            LoginRequest,
            Body(examples=[Example(value={"username": "alice", "password": "correct horse battery staple"})]),
        ],
    ) -> Response[TokenPair]:
        return _pair(await auth.login(data.username, data.password, client), queue)

    @post(
        "/refresh",
        before_request=require_json_body,
        opt={"rate_limit": "refresh"},
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token",
        description="Spends the refresh token and returns a new pair. Presenting a spent token again revokes "
        "its whole session, except within a short grace period, which returns the same successor.",
        responses=error_responses(400, 401, 413, 415, 429, 503),
    )
    async def refresh(
        self, auth: NamedDependency[AuthService], client: NamedDependency[ClientInfo], data: JSONBody[RefreshRequest]
    ) -> Response[TokenPair]:
        return _pair(await auth.refresh(data.refresh_token, client))

    @post(
        "/logout",
        before_request=require_json_body,
        opt={"rate_limit": "logout", OPTIONAL_BODY: True},
        status_code=HTTP_204_NO_CONTENT,
        summary="Log out",
        description="Revokes the access token and its session (or the session of `refresh_token`); "
        '`"everywhere": true` revokes every token of the user.',
        dependencies={"sessions": Provide(provide_session_service)},
        security=[{"BearerToken": []}],
        responses=error_responses(400, 401, 413, 415, 429, 503),
    )
    async def logout(
        self,
        sessions: NamedDependency[SessionService],
        claims: NamedDependency[AccessClaims],
        data: JSONBody[LogoutRequest | None] = None,
    ) -> None:
        data = data or LogoutRequest()
        await sessions.logout(claims, data.refresh_token, data.everywhere)

    @get(
        "/verify",
        opt={"rate_limit": "verify"},
        summary="Verify an access token",
        description="Checks signature, expiry, issuer, audience and revocation of the Bearer token.",
        security=[{"BearerToken": []}],
        responses={
            200: ResponseSpec(
                data_container=VerifyResponse, description="The token is valid.", generate_examples=False
            ),
            **error_responses(401, 429, 503),
        },
    )
    async def verify(self, claims: NamedDependency[AccessClaims]) -> ASGIResponse:
        # Served by the fast path (server/dispatch.py) in the common case; this handler answers
        # what it leaves to Litestar (CORS requests) and describes the endpoint in OpenAPI.
        return ASGIResponse(body=verify_body(claims), media_type=MediaType.JSON)
