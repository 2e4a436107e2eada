"""HTTP endpoints of the passwordless login (/api/v1/auth/passkey): thin, they delegate to PasskeyLogin."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from auth_service.domain.auth.controllers import pair_response
from auth_service.domain.auth.deps import provide_auth_service, provide_client
from auth_service.domain.auth.passkey_deps import provide_ceremonies, provide_passkey_login, provide_relying_party
from auth_service.domain.auth.passkey_login import PasskeyLogin
from auth_service.domain.auth.schemas import PasskeyCredential, TokenPair
from auth_service.domain.auth.service import ClientInfo
from auth_service.lib.http import ERRORS, ApiController, require_json_body, strict_body

__all__ = [
    "CeremonyId",
    "PasskeyCredential",
    "PasskeyLoginController",
    "PasskeyLoginOptions",
    "PasskeyLoginRequest",
]

CeremonyId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="`ceremony_id` of the options"),
]


class PasskeyLoginOptions(msgspec.Struct):
    ceremony_id: Annotated[str, msgspec.Meta(description="Send it back with the credential")]
    public_key: Annotated[
        dict[str, Any],
        msgspec.Meta(description="PublicKeyCredentialRequestOptionsJSON for `navigator.credentials.get()`"),
    ]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the ceremony lives")]


@strict_body
class PasskeyLoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    ceremony_id: CeremonyId
    credential: PasskeyCredential


class PasskeyLoginController(ApiController):
    path = "/api/v1/auth/passkey"
    tags = ["auth"]
    errors = (429, 503)
    dependencies = {
        "auth": Provide(provide_auth_service),
        "client": Provide(provide_client, sync_to_thread=False),
        "ceremonies": Provide(provide_ceremonies, sync_to_thread=False),
        "relying_party": Provide(provide_relying_party, sync_to_thread=False),
        "passwordless": Provide(provide_passkey_login),
    }

    @post(
        "/options",
        status_code=HTTP_200_OK,
        summary="Start a passwordless login",
        description="Options for `navigator.credentials.get()`: a discoverable-credential request (empty "
        "`allowCredentials`, user verification required) and the `ceremony_id` to send back with the answer. "
        "The ceremony is single-use and lives `expires_in` seconds. Limited per IP (RATE_LIMIT_PUBLIC).",
    )
    async def options(self, passwordless: NamedDependency[PasskeyLogin]) -> Response[PasskeyLoginOptions]:
        begun = await passwordless.begin()
        body = PasskeyLoginOptions(
            ceremony_id=begun.ceremony_id, public_key=begun.public_key, expires_in=begun.expires_in
        )
        return Response(body, status_code=HTTP_200_OK, headers={"Cache-Control": "no-store"})

    @post(
        "",
        before_request=require_json_body,
        opt={"rate_limit": "login", ERRORS: (401, 403)},
        status_code=HTTP_200_OK,
        summary="Log in with a passkey",
        description="Checks the assertion answering the ceremony and returns the token pair a password login "
        "returns (with its login record and notification). An unknown, used or expired ceremony, an unknown "
        "credential, a bad signature, another origin or RP, a sign counter that went back (a cloned "
        "authenticator) and a disabled account all answer 401 AUTH_INVALID_CREDENTIALS. Counts against the "
        "IP's login limit (RATE_LIMIT_LOGIN).",
    )
    async def login(
        self,
        passwordless: NamedDependency[PasskeyLogin],
        client: NamedDependency[ClientInfo],
        data: JSONBody[PasskeyLoginRequest],
    ) -> Response[TokenPair]:
        return pair_response(await passwordless.finish(data.ceremony_id, data.credential, client))
