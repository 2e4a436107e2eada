"""The hosted "choose a new password" page a reset mail links to (`/reset-password?token=…`).

GET shows the form and changes nothing (mail scanners open links); the form's POST spends the
link. A link that is not live answers the same page whatever the reason (invalid, used,
expired), as the API's LINK_INVALID does. Pages are for people: HTML, not the JSON envelope,
and not in the API document.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, QueryParameter

from auth_service.domain.users.deps import provide_password_reset, provide_verification
from auth_service.domain.users.policy import PasswordPolicy, PasswordPolicyError
from auth_service.domain.users.recovery import PasswordReset
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.errors import LinkInvalid
from auth_service.lib.pages import page
from auth_service.lib.urls import RESET_PASSWORD_PATH, VERIFY_EMAIL_PATH

__all__ = ["ResetPasswordPage", "VerifyEmailPage"]


class ResetForm(msgspec.Struct):
    token: str = ""
    new_password: str = ""


class ResetPasswordPage(Controller):
    path = RESET_PASSWORD_PATH
    include_in_schema = False

    @get(media_type=MediaType.HTML)
    async def show(
        self, password_policy: NamedDependency[PasswordPolicy], token: Annotated[str, QueryParameter(name="token")] = ""
    ) -> Response[str]:
        if not token:
            return page("reset_password_invalid", status=400)
        return page("reset_password", token=token, problem="", min_length=password_policy.min_length)

    @post(
        media_type=MediaType.HTML,
        status_code=200,
        dependencies={"reset": Provide(provide_password_reset)},
    )
    async def confirm(
        self,
        reset: NamedDependency[PasswordReset],
        password_policy: NamedDependency[PasswordPolicy],
        data: Annotated[ResetForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        try:
            await reset.confirm(data.token, data.new_password)
        except LinkInvalid:
            return page("reset_password_invalid", status=400)
        except PasswordPolicyError as exc:
            return page(
                "reset_password", status=400, token=data.token, problem=str(exc), min_length=password_policy.min_length
            )
        return page("reset_password_done")


class TokenForm(msgspec.Struct):
    token: str = ""


class VerifyEmailPage(Controller):
    """`/verify-email?token=…`: GET shows a button (mail scanners open links), its POST verifies."""

    path = VERIFY_EMAIL_PATH
    include_in_schema = False

    @get(media_type=MediaType.HTML)
    async def show(self, token: Annotated[str, QueryParameter(name="token")] = "") -> Response[str]:
        if not token:
            return page("verify_email_invalid", status=400)
        return page("verify_email", token=token)

    @post(media_type=MediaType.HTML, status_code=200, dependencies={"verification": Provide(provide_verification)})
    async def confirm(
        self,
        verification: NamedDependency[EmailVerification],
        data: Annotated[TokenForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        try:
            await verification.confirm(data.token)
        except LinkInvalid:
            return page("verify_email_invalid", status=400)
        return page("verify_email_done")
