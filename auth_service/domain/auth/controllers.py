"""HTTP endpoints of /api/v1/auth: thin, they translate and delegate to AuthService."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import msgspec
import structlog
from litestar import Controller, Response, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, JSONBody
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from auth_service.domain.auth.deps import provide_auth_service, provide_client
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.schemas import (
    EmailChangeRequest,
    LoginRequest,
    LogoutRequest,
    PasswordChangeRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    RegistrationAccepted,
    TokenPair,
    VerifyEmailRequest,
    VerifyResponse,
)
from auth_service.domain.auth.service import AuthService, ClientInfo, IssuedTokens
from auth_service.domain.sessions.deps import provide_session_service
from auth_service.domain.sessions.service import SessionService
from auth_service.domain.users.account import Account, MeRead
from auth_service.domain.users.controllers import provide_account
from auth_service.domain.users.deps import (
    provide_password_reset,
    provide_registration,
    provide_user_service,
    provide_verification,
)
from auth_service.domain.users.recovery import PasswordReset
from auth_service.domain.users.registration import Prepared, Registration
from auth_service.domain.users.service import UserService
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.errors import NotFound, TokenRevoked
from auth_service.lib.http import OPTIONAL_BODY, error_responses, require_json_body
from auth_service.settings import Settings

__all__ = ["VERIFY_PATH", "AccountController", "AuthController", "verify_body"]

VERIFY_PATH = "/api/v1/auth/verify"  # the hot path: its traces are sampled (TRACE_VERIFY_SAMPLE_RATIO)

log = structlog.get_logger()
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


class Accepted(msgspec.Struct):
    status: str


async def _request_reset(reset: PasswordReset, email: str) -> None:
    try:
        await reset.request(email)
    except Exception:  # after the response: nobody to tell but the log
        log.exception("password_reset.request_failed")


async def _complete_registration(registration: Registration, prepared: Prepared) -> None:
    try:
        await registration.complete(prepared)
    except Exception:  # after the response: nobody to tell but the log
        log.exception("registration.complete_failed")


def _pair(issued: IssuedTokens) -> Response[TokenPair]:
    body = TokenPair(
        access_token=issued.access_token,
        expires_in=issued.access_expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )
    return Response(body, status_code=HTTP_200_OK, headers=_NO_STORE)


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
        data: Annotated[
            LoginRequest,
            Body(examples=[Example(value={"username": "alice", "password": "correct horse battery staple"})]),
        ],
    ) -> Response[TokenPair]:
        return _pair(await auth.login(data.username, data.password, client))

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

    @post(
        "/password-reset",
        before_request=require_json_body,
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a password reset link",
        description="Always 202 with the same body, in the same time, whether or not the address has an "
        "account: an active account gets a single-use link by e-mail (PASSWORD_RESET_TTL_MINUTES). Limited "
        "per address (RATE_LIMIT_EMAIL) and per IP (RATE_LIMIT_EMAIL_IP).",
        dependencies={"reset": Provide(provide_password_reset)},
        responses=error_responses(400, 413, 415, 429, 503),
    )
    async def password_reset(
        self,
        data: JSONBody[PasswordResetRequest],
        client: NamedDependency[ClientInfo],
        limits: NamedDependency[EndpointLimits],
        reset: NamedDependency[PasswordReset],
    ) -> Response[Accepted]:
        await limits.email(client.ip, data.email)
        # The lookup, the token and the outbox row happen after the response is sent: its status,
        # body and timing are the same for every address.
        return Response(
            Accepted(status="accepted"),
            status_code=HTTP_202_ACCEPTED,
            background=BackgroundTask(_request_reset, reset, data.email),
        )

    @post(
        "/password-reset/confirm",
        before_request=require_json_body,
        status_code=HTTP_204_NO_CONTENT,
        summary="Set a new password with a reset link",
        description="Spends the link (once), sets the password and ends every session of the user. "
        "A link that is not live is 400 LINK_INVALID; a weak password is 400 VALIDATION_ERROR (the link "
        "stays usable).",
        dependencies={"reset": Provide(provide_password_reset)},
        responses=error_responses(400, 413, 415, 429, 503),
    )
    async def password_reset_confirm(
        self,
        data: JSONBody[PasswordResetConfirm],
        reset: NamedDependency[PasswordReset],
    ) -> Response[None]:
        await reset.confirm(data.token, data.new_password)
        return Response(None, status_code=HTTP_204_NO_CONTENT)

    @post(
        "/register",
        before_request=require_json_body,
        status_code=HTTP_202_ACCEPTED,
        summary="Sign up",
        description="Only with REGISTRATION_ENABLED=true (else 404 NOT_FOUND). Creates an unverified account "
        "and mails its verification link. A taken username is 409 CONFLICT; a taken e-mail address answers the "
        "same 202, and its owner is told by mail.",
        dependencies={"registration": Provide(provide_registration)},
        responses=error_responses(400, 404, 409, 413, 415, 429, 503),
    )
    async def register(
        self,
        data: JSONBody[RegisterRequest],
        settings: NamedDependency[Settings],
        client: NamedDependency[ClientInfo],
        limits: NamedDependency[EndpointLimits],
        registration: NamedDependency[Registration],
    ) -> Response[RegistrationAccepted]:
        if not settings.accounts.registration_enabled:
            raise NotFound
        await limits.email(client.ip, data.email)
        prepared = await registration.prepare(data.username, data.email, data.password)
        return Response(
            RegistrationAccepted(status="verification_sent"),
            status_code=HTTP_202_ACCEPTED,
            background=BackgroundTask(_complete_registration, registration, prepared),
        )

    @post(
        "/verify-email",
        before_request=require_json_body,
        status_code=HTTP_204_NO_CONTENT,
        summary="Verify an e-mail address with its link",
        description="Spends the link and marks the address verified; a token that is not a live link for the "
        "account's current address is 400 LINK_INVALID.",
        dependencies={"verification": Provide(provide_verification)},
        responses=error_responses(400, 413, 415, 429, 503),
    )
    async def verify_email(
        self, data: JSONBody[VerifyEmailRequest], verification: NamedDependency[EmailVerification]
    ) -> None:
        await verification.confirm(data.token)

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


class AccountController(Controller):
    """The account changes that check the current password (a password or e-mail change) or send
    a rate-limited mail: here, beside login, because they use its password check, limits and
    session opening (domain/auth); the account's reads live in domain/users."""

    path = "/api/v1/users/me"
    tags = ["account"]
    dependencies = {
        "auth": Provide(provide_auth_service),
        "client": Provide(provide_client, sync_to_thread=False),
        "users": Provide(provide_user_service),
        "account": Provide(provide_account),
    }

    @get(
        "",
        summary="My account",
        description="The caller's account: name, e-mail (and whether it is verified), roles, second factors.",
        security=[{"BearerToken": []}],
        responses=error_responses(401, 429, 503),
    )
    async def me(self, account: NamedDependency[Account]) -> MeRead:
        found = await account.me()
        if found is None:  # deleted or deactivated since the token was issued (the token is dead too)
            raise TokenRevoked
        return found

    @patch(
        "",
        before_request=require_json_body,
        opt={"rate_limit": "api"},
        summary="Change my e-mail address",
        description="Checks `current_password` like a login; the new address is unverified until the link "
        "mailed to it is used, and the old address is told. An address another account has is 409 CONFLICT.",
        security=[{"BearerToken": []}],
        responses=error_responses(400, 401, 409, 413, 415, 429, 503),
    )
    async def change_email(
        self,
        data: JSONBody[EmailChangeRequest],
        auth: NamedDependency[AuthService],
        users: NamedDependency[UserService],
        client: NamedDependency[ClientInfo],
        claims: NamedDependency[AccessClaims],
        account_links: NamedDependency[AccountLinks],
        account: NamedDependency[Account],
    ) -> Response[MeRead]:
        await auth.change_email(claims, data.current_password, data.email, client, users, account_links)
        me = await account.me()
        if me is None:
            raise TokenRevoked
        return Response(me)

    @post(
        "/verify-email",
        status_code=HTTP_202_ACCEPTED,
        summary="Send me a new verification link",
        description="Mails a new link to the account's address when it is not verified yet (limited like "
        "reset mails); 202 either way.",
        dependencies={"verification": Provide(provide_verification)},
        security=[{"BearerToken": []}],
        responses=error_responses(401, 429, 503),
    )
    async def resend_verification(
        self,
        verification: NamedDependency[EmailVerification],
        limits: NamedDependency[EndpointLimits],
        claims: NamedDependency[AccessClaims],
        client: NamedDependency[ClientInfo],
    ) -> Response[Accepted]:
        await limits.email(client.ip, f"user:{claims.sub}")
        await verification.resend(uuid.UUID(claims.sub))
        return Response(Accepted(status="accepted"), status_code=HTTP_202_ACCEPTED)

    @post(
        "/password",
        before_request=require_json_body,
        opt={"rate_limit": "api"},
        status_code=HTTP_200_OK,
        summary="Change my password",
        description="Checks `current_password` like a login (a wrong one is 401 AUTH_INVALID_CREDENTIALS and "
        "counts against the username's failure budget), applies the password policy to `new_password`, ends "
        "every session and access token of the user, and returns a fresh pair for the caller.",
        security=[{"BearerToken": []}],
        responses=error_responses(400, 401, 413, 415, 429, 503),
    )
    async def change_password(
        self,
        data: JSONBody[PasswordChangeRequest],
        auth: NamedDependency[AuthService],
        users: NamedDependency[UserService],
        client: NamedDependency[ClientInfo],
        claims: NamedDependency[AccessClaims],
    ) -> Response[TokenPair]:
        issued = await auth.change_password(claims, data.current_password, data.new_password, client, users)
        return _pair(issued)
