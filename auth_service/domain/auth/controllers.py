"""HTTP endpoints of /api/v1/auth: thin, they translate and delegate to AuthService."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
import structlog
from litestar import Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, JSONBody
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from auth_service.domain.auth.deps import provide_auth_service, provide_client, provide_second_step
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.step import Proof, SecondStep
from auth_service.domain.auth.schemas import (
    LoginRequest,
    LogoutRequest,
    MfaRequest,
    MfaWebAuthnOptions,
    MfaWebAuthnOptionsRequest,
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
from auth_service.domain.users.deps import (
    provide_password_reset,
    provide_registration,
    provide_verification,
)
from auth_service.domain.users.recovery import PasswordReset
from auth_service.domain.users.registration import Prepared, Registration
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.errors import NotFound
from auth_service.lib.http import AUTH, BEARER, ERRORS, OPTIONAL_BODY, ApiController, require_json_body
from auth_service.lib.principal import Subject
from auth_service.settings import Settings

__all__ = ["VERIFY_PATH", "Accepted", "AuthController", "pair_response", "verify_body"]

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
            amr=claims.amr,
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


def pair_response(issued: IssuedTokens) -> Response[TokenPair]:
    body = TokenPair(
        access_token=issued.access_token,
        expires_in=issued.access_expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )
    return Response(body, status_code=HTTP_200_OK, headers=_NO_STORE)


class AuthController(ApiController):
    path = "/api/v1/auth"
    tags = ["auth"]
    errors = (429, 503)
    dependencies = {"auth": Provide(provide_auth_service), "client": Provide(provide_client, sync_to_thread=False)}

    @post(
        "/login",
        before_request=require_json_body,
        opt={"rate_limit": "login", ERRORS: (401,)},
        status_code=HTTP_200_OK,
        summary="Log in with username and password",
        description="Returns an access token and a refresh token. Unknown user, wrong password and "
        "disabled account all answer AUTH_INVALID_CREDENTIALS.",
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
        return pair_response(await auth.login(data.username, data.password, client))

    @post(
        "/mfa",
        before_request=require_json_body,
        opt={ERRORS: (401,)},
        status_code=HTTP_200_OK,
        summary="Finish a login with its second factor",
        description="After a login answered 401 AUTH_MFA_REQUIRED: the `mfa_token` of its `error.mfa` and exactly "
        "one proof, a TOTP `code`, a `recovery_code` or a passkey's assertion as `webauthn` (answering "
        "POST /auth/mfa/webauthn/options); returns the token pair. A wrong, replayed or expired code or assertion, "
        "or a token that is unknown, used, expired, out of attempts (MFA_MAX_ATTEMPTS) or from another IP, is 401 "
        "AUTH_MFA_INVALID. Limited per user (RATE_LIMIT_MFA, across all its tokens) and by the username's failure "
        "budget.",
        dependencies={"step": Provide(provide_second_step)},
    )
    async def mfa(
        self, step: NamedDependency[SecondStep], client: NamedDependency[ClientInfo], data: JSONBody[MfaRequest]
    ) -> Response[TokenPair]:
        proof = Proof.of(data.code, data.recovery_code, data.webauthn)
        return pair_response(await step.finish(data.mfa_token, proof, client))

    @post(
        "/mfa/webauthn/options",
        before_request=require_json_body,
        opt={ERRORS: (401,)},
        status_code=HTTP_200_OK,
        summary="A passkey challenge for a login's second step",
        description="For a login answered 401 AUTH_MFA_REQUIRED whose `methods` include `webauthn`: assertion "
        "options for that user's passkeys (`navigator.credentials.get()`). Their challenge is single use, kept for "
        "this `mfa_token` only, and answered as `webauthn` on POST /auth/mfa. Counts no attempt. An unknown, used "
        "or expired token, one from another IP, or a user with no passkey is 401 AUTH_MFA_INVALID.",
        dependencies={"step": Provide(provide_second_step)},
    )
    async def mfa_webauthn_options(
        self,
        step: NamedDependency[SecondStep],
        client: NamedDependency[ClientInfo],
        data: JSONBody[MfaWebAuthnOptionsRequest],
    ) -> Response[MfaWebAuthnOptions]:
        challenge = await step.webauthn_options(data.mfa_token, client.ip)
        return Response(MfaWebAuthnOptions(challenge.public_key, challenge.expires_in), headers=_NO_STORE)

    @post(
        "/refresh",
        before_request=require_json_body,
        opt={"rate_limit": "refresh", ERRORS: (401,)},
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token",
        description="Spends the refresh token and returns a new pair. Presenting a spent token again revokes "
        "its whole session, except within a short grace period, which returns the same successor.",
    )
    async def refresh(
        self, auth: NamedDependency[AuthService], client: NamedDependency[ClientInfo], data: JSONBody[RefreshRequest]
    ) -> Response[TokenPair]:
        return pair_response(await auth.refresh(data.refresh_token, client))

    @post(
        "/logout",
        before_request=require_json_body,
        opt={"rate_limit": "logout", OPTIONAL_BODY: True, AUTH: BEARER},
        status_code=HTTP_204_NO_CONTENT,
        summary="Log out",
        description="Revokes the access token and its session (or the session of `refresh_token`); "
        '`"everywhere": true` revokes every token of the user.',
        dependencies={"sessions": Provide(provide_session_service)},
    )
    async def logout(
        self,
        sessions: NamedDependency[SessionService],
        subject: NamedDependency[Subject],
        data: JSONBody[LogoutRequest | None] = None,
    ) -> None:
        data = data or LogoutRequest()
        await sessions.logout(subject.token, data.refresh_token, data.everywhere)

    @post(
        "/password-reset",
        before_request=require_json_body,
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a password reset link",
        description="Always 202 with the same body, in the same time, whether or not the address has an "
        "account: an active account gets a single-use link by e-mail (PASSWORD_RESET_TTL_MINUTES). Limited "
        "per address (RATE_LIMIT_EMAIL) and per IP (RATE_LIMIT_EMAIL_IP).",
        dependencies={"reset": Provide(provide_password_reset)},
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
        opt={ERRORS: (404, 409)},
        summary="Sign up",
        description="Only with REGISTRATION_ENABLED=true (else 404 NOT_FOUND). Creates an unverified account "
        "and mails its verification link. A taken username is 409 CONFLICT; a taken e-mail address answers the "
        "same 202, and its owner is told by mail.",
        dependencies={"registration": Provide(provide_registration)},
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
    )
    async def verify_email(
        self, data: JSONBody[VerifyEmailRequest], verification: NamedDependency[EmailVerification]
    ) -> None:
        await verification.confirm(data.token)

    @get(
        "/verify",
        opt={"rate_limit": "verify", AUTH: BEARER},
        summary="Verify an access token",
        description="Checks signature, expiry, issuer, audience and revocation of the Bearer token.",
        responses={
            200: ResponseSpec(data_container=VerifyResponse, description="The token is valid.", generate_examples=False)
        },
    )
    async def verify(self, subject: NamedDependency[Subject]) -> ASGIResponse:
        # Served by the fast path (server/dispatch.py) in the common case; this handler answers
        # what it leaves to Litestar (CORS requests) and describes the endpoint in OpenAPI.
        return ASGIResponse(body=verify_body(subject.token), media_type=MediaType.JSON)
