"""Wire types of the account's second factors (/api/v1/users/me/mfa/...)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from auth_service.domain.auth.schemas import MfaCode, Password
from auth_service.lib.http import one_of_fields, strict_body

__all__ = ["RecoveryCodes", "TotpCodeRequest", "TotpDisableRequest", "TotpSetup", "TotpStartRequest"]


@strict_body
class TotpStartRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: (
        Annotated[
            Password,
            msgspec.Meta(
                description="Required with an access token; not with the mfa_token of a login that must enrol "
                "(its password was just checked)"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class TotpSetup(msgspec.Struct):
    """A pending enrolment: the secret for an authenticator app, as text, URI and QR code."""

    secret: Annotated[str, msgspec.Meta(description="Base32 secret, for typing into the app")]
    otpauth_uri: Annotated[str, msgspec.Meta(description="otpauth://totp/... (Google's Key URI format)")]
    qr_svg: Annotated[str, msgspec.Meta(description="The URI as a QR code: one inline <svg> element")]


@strict_body
class TotpCodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: MfaCode


class RecoveryCodes(msgspec.Struct):
    recovery_codes: Annotated[list[str], msgspec.Meta(description="Ten single-use codes, shown once (`xxxx-xxxx-xx`)")]


@one_of_fields("code", "current_password")
@strict_body
class TotpDisableRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of a current code and the password."""

    code: MfaCode | msgspec.UnsetType = msgspec.UNSET
    current_password: Password | msgspec.UnsetType = msgspec.UNSET
