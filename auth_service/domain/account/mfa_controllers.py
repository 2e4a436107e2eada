"""HTTP endpoints of /api/v1/users/me/mfa: the caller's TOTP authenticator and recovery codes.
Thin: they translate and delegate to TotpEnrolment (domain/account/mfa.py)."""

from __future__ import annotations

from litestar import Response, delete, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.account.mfa import TotpEnrolment
from auth_service.domain.account.schemas import (
    RecoveryCodes,
    TotpCodeRequest,
    TotpDisableRequest,
    TotpSetup,
    TotpStartRequest,
)
from auth_service.domain.auth.deps import provide_auth_service, provide_client
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.factors import MfaKit
from auth_service.domain.auth.service import AuthService, ClientInfo
from auth_service.lib.audit import Actor
from auth_service.lib.errors import InvalidCredentials, InvalidInput
from auth_service.lib.http import ACCEPTS_MFA_TOKEN, AUTH, BEARER, ERRORS, OPTIONAL_BODY, ApiController
from auth_service.lib.http import require_json_body as _json
from auth_service.lib.principal import Subject

__all__ = ["MfaController"]


async def provide_enrolment(
    db_session: NamedDependency[AsyncSession], mfa: NamedDependency[MfaKit], limits: NamedDependency[EndpointLimits]
) -> TotpEnrolment:
    return TotpEnrolment(db_session, mfa, limits)


_ENROLMENT_TOKEN = (
    " Also takes, as `Authorization: Bearer <mfa_token>`, the token of a login that answered AUTH_MFA_REQUIRED "
    'with `methods: ["enroll"]` (MFA_REQUIRED_ROLES), from the IP of that login.'
)


class MfaController(ApiController):
    path = "/api/v1/users/me/mfa"
    tags = ["account"]
    opt = {AUTH: BEARER}
    errors = (429, 503)
    dependencies = {
        "enrolment": Provide(provide_enrolment),
        "auth": Provide(provide_auth_service),
        "client": Provide(provide_client, sync_to_thread=False),
    }

    @post(
        "/totp",
        before_request=_json,
        opt={"rate_limit": "api", ACCEPTS_MFA_TOKEN: True, OPTIONAL_BODY: True, ERRORS: (409,)},
        status_code=HTTP_200_OK,
        summary="Start a TOTP enrolment",
        description="Checks `current_password` like a login, then returns a new secret as text, otpauth URI and "
        "QR code (SVG). Pending until confirmed; a confirmed authenticator is 409 CONFLICT (disable it first)."
        + _ENROLMENT_TOKEN,
    )
    async def start(
        self,
        enrolment: NamedDependency[TotpEnrolment],
        auth: NamedDependency[AuthService],
        subject: NamedDependency[Subject],
        client: NamedDependency[ClientInfo],
        data: JSONBody[TotpStartRequest | None] = None,
    ) -> TotpSetup:
        if subject.how != "mfa_token":
            if data is None or not isinstance(data.current_password, str):
                raise InvalidCredentials
            await enrolment.check_password(auth, subject, data.current_password, client)
        return await enrolment.start(subject.id, subject.username)

    @post(
        "/totp/confirm",
        before_request=_json,
        opt={"rate_limit": "api", ACCEPTS_MFA_TOKEN: True, ERRORS: (404,)},
        status_code=HTTP_200_OK,
        summary="Confirm the TOTP enrolment",
        description="The first right code from the app enables TOTP (required at login from now on) and returns "
        "ten recovery codes, shown once. A wrong code is 401 AUTH_MFA_INVALID; no pending enrolment is 404. After "
        "an enrolment with an mfa_token, finish that login with POST /api/v1/auth/mfa and a fresh code."
        + _ENROLMENT_TOKEN,
    )
    async def confirm(
        self,
        enrolment: NamedDependency[TotpEnrolment],
        subject: NamedDependency[Subject],
        actor: NamedDependency[Actor],
        data: JSONBody[TotpCodeRequest],
    ) -> RecoveryCodes:
        return RecoveryCodes(await enrolment.confirm(subject, data.code, actor.as_user(subject.user_id)))

    @delete(
        "/totp",
        before_request=_json,
        opt={"rate_limit": "api", ERRORS: (404,)},
        status_code=HTTP_204_NO_CONTENT,
        summary="Disable TOTP",
        description="With exactly one of a current `code` (a wrong one is 401 AUTH_MFA_INVALID) and "
        "`current_password` (checked like a login's): removes the authenticator and the recovery codes.",
    )
    async def disable(
        self,
        enrolment: NamedDependency[TotpEnrolment],
        auth: NamedDependency[AuthService],
        subject: NamedDependency[Subject],
        client: NamedDependency[ClientInfo],
        actor: NamedDependency[Actor],
        data: JSONBody[TotpDisableRequest],
    ) -> Response[None]:
        code, password = data.code, data.current_password
        if isinstance(code, str) == isinstance(password, str):
            raise InvalidInput("body", "give exactly one of code, current_password", reason="one_proof")
        if isinstance(code, str):
            await enrolment.check_code(subject, code)
        elif isinstance(password, str):
            await enrolment.check_password(auth, subject, password, client)
        await enrolment.disable(subject.id, actor)
        return Response(None, status_code=HTTP_204_NO_CONTENT)

    @post(
        "/recovery-codes",
        before_request=_json,
        opt={"rate_limit": "api", ERRORS: (404,)},
        status_code=HTTP_200_OK,
        summary="New recovery codes",
        description="For a current TOTP `code` (a wrong one is 401 AUTH_MFA_INVALID): ten new codes, shown once; "
        "the old ones stop working. Without TOTP enabled: 404.",
    )
    async def regenerate(
        self,
        enrolment: NamedDependency[TotpEnrolment],
        subject: NamedDependency[Subject],
        actor: NamedDependency[Actor],
        data: JSONBody[TotpCodeRequest],
    ) -> RecoveryCodes:
        return RecoveryCodes(await enrolment.regenerate(subject, data.code, actor))
