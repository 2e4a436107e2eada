"""HTTP endpoints of /api/v1/users/me/passkeys: the caller's passkeys.

Their own controller, so that one `opt` can let another kind of subject in (the enrolment-only
`mfa_token` of an enforced enrolment) without opening the rest of /users/me to it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.account.passkeys import PasskeyEnrolment
from auth_service.domain.auth.mfa.factors import MfaKit
from auth_service.domain.auth.passkey_deps import provide_ceremonies, provide_relying_party
from auth_service.domain.auth.passkey_store import PasskeyRow
from auth_service.domain.auth.passkeys import RelyingParty
from auth_service.lib.audit import Actor
from auth_service.lib.errors import NotFound
from auth_service.lib.http import (
    ACCEPTS_MFA_TOKEN,
    AUTH,
    BEARER,
    ERRORS,
    OPTIONAL_BODY,
    ApiController,
    require_json_body,
    strict_body,
)
from auth_service.lib.principal import Subject
from auth_service.lib.redis.ceremonies import CeremonyStore

__all__ = [
    "PasskeyController",
    "PasskeyCreated",
    "PasskeyOptionsRequest",
    "PasskeyRead",
    "PasskeyRegistration",
    "PasskeyRename",
    "RegistrationOptionsRead",
]

PasskeyName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
        description="A name to tell the passkey from the others (e.g. the device), 1-64 characters",
    ),
]
_B64URL = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_-]+={0,2}$")]


@strict_body
class PasskeyOptionsRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: PasskeyName | None = None


class RegistrationOptionsRead(msgspec.Struct):
    public_key: Annotated[
        dict[str, Any],
        msgspec.Meta(description="PublicKeyCredentialCreationOptionsJSON for `navigator.credentials.create()`"),
    ]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the options can be answered")]


class PasskeyRegistration(msgspec.Struct):
    """The browser's `PublicKeyCredential.toJSON()` for the options, plus an optional `name`."""

    id: _B64URL
    raw_id: _B64URL = msgspec.field(name="rawId")
    type: Annotated[str, msgspec.Meta(max_length=32)]
    response: Annotated[dict[str, Any], msgspec.Meta(description="clientDataJSON, attestationObject, transports, …")]
    client_extension_results: dict[str, Any] = msgspec.field(default_factory=dict, name="clientExtensionResults")
    authenticator_attachment: Annotated[str, msgspec.Meta(max_length=32)] | None = msgspec.field(
        default=None, name="authenticatorAttachment"
    )
    name: PasskeyName | None = None

    def credential(self) -> dict[str, Any]:
        """The credential as the WebAuthn library reads it (without our `name`)."""
        return {
            "id": self.id,
            "rawId": self.raw_id,
            "type": self.type,
            "response": self.response,
            "clientExtensionResults": self.client_extension_results,
            "authenticatorAttachment": self.authenticator_attachment,
        }


@strict_body
class PasskeyRename(msgspec.Struct, forbid_unknown_fields=True):
    name: PasskeyName


class PasskeyCreated(msgspec.Struct):
    id: str
    name: str
    created_at: dt.datetime


class PasskeyRead(msgspec.Struct):
    id: str
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    backup_eligible: Annotated[bool, msgspec.Meta(description="A synced (multi-device) passkey")]
    backed_up: Annotated[bool, msgspec.Meta(description="Synced now, as the last use reported")]
    transports: list[str]


def _read(row: PasskeyRow) -> PasskeyRead:
    return PasskeyRead(
        str(row.id),
        row.name,
        row.created_at,
        row.last_used_at,
        row.backup_eligible,
        row.backed_up,
        list(row.transports),
    )


def _passkey_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound("no such passkey") from None


async def provide_enrolment(
    db_session: NamedDependency[AsyncSession],
    ceremonies: NamedDependency[CeremonyStore],
    relying_party: NamedDependency[RelyingParty],
    actor: NamedDependency[Actor],
) -> PasskeyEnrolment:
    return PasskeyEnrolment(db_session, ceremonies, relying_party, actor)


PasskeyId = Annotated[str, Parameter(max_length=64, description="A passkey id from GET /passkeys")]


class PasskeyController(ApiController):
    """/api/v1/users/me/passkeys: register, list, rename and remove the caller's passkeys."""

    path = "/api/v1/users/me/passkeys"
    tags = ["account"]
    opt = {AUTH: BEARER, "rate_limit": "api"}
    errors = (429, 503)
    dependencies = {
        "ceremonies": Provide(provide_ceremonies, sync_to_thread=False),
        "relying_party": Provide(provide_relying_party, sync_to_thread=False),
        "enrolment": Provide(provide_enrolment),
    }

    @post(
        "/options",
        before_request=require_json_body,
        opt={OPTIONAL_BODY: True, ACCEPTS_MFA_TOKEN: True},
        status_code=HTTP_200_OK,
        summary="Start registering a passkey",
        description="Options for `navigator.credentials.create()` (attestation none, user verification "
        "preferred, a discoverable credential required, the caller's passkeys excluded). They are the caller's "
        "one pending registration: single-use, valid `expires_in` seconds, replaced by new options.",
    )
    async def options(
        self,
        enrolment: NamedDependency[PasskeyEnrolment],
        subject: NamedDependency[Subject],
        data: JSONBody[PasskeyOptionsRequest | None] = None,
    ) -> Response[RegistrationOptionsRead]:
        name = data.name if data else None
        options = await enrolment.options(subject.id, subject.username, name)
        body = RegistrationOptionsRead(public_key=options.public_key, expires_in=options.expires_in)
        return Response(body, status_code=HTTP_200_OK, headers={"Cache-Control": "no-store"})

    @post(
        "",
        before_request=require_json_body,
        opt={ERRORS: (409,), ACCEPTS_MFA_TOKEN: True},
        status_code=HTTP_201_CREATED,
        summary="Register a passkey",
        description="The browser's `credential.toJSON()` answering the pending options, plus an optional "
        "`name`. A registration that does not verify, or without pending options (used or expired), is 400 "
        "VALIDATION_ERROR on `credential`; a credential registered already is 409 CONFLICT. The owner is told "
        "by mail. With the `mfa_token` of a login that must enrol (as `Authorization: Bearer`, here and on "
        "/options), that login then finishes on POST /api/v1/auth/mfa with the new passkey (`webauthn`).",
    )
    async def register(
        self,
        enrolment: NamedDependency[PasskeyEnrolment],
        subject: NamedDependency[Subject],
        mfa: NamedDependency[MfaKit],
        data: JSONBody[PasskeyRegistration],
    ) -> Response[PasskeyCreated]:
        row = await enrolment.register(subject.id, data.credential(), data.name)
        if subject.how == "mfa_token" and subject.mfa_token:
            await mfa.pending.set_methods(subject.mfa_token, ("webauthn",))
        return Response(PasskeyCreated(str(row.id), row.name, row.created_at), status_code=HTTP_201_CREATED)

    @get("", summary="My passkeys", description="The caller's passkeys, oldest first (no key material).")
    async def listed(
        self, enrolment: NamedDependency[PasskeyEnrolment], subject: NamedDependency[Subject]
    ) -> list[PasskeyRead]:
        return [_read(row) for row in await enrolment.listed(subject.id)]

    @patch(
        "/{passkey_id:str}",
        before_request=require_json_body,
        opt={ERRORS: (404,)},
        summary="Rename one of my passkeys",
        description="An id that is not one of the caller's passkeys is 404.",
    )
    async def rename(
        self,
        passkey_id: PasskeyId,
        enrolment: NamedDependency[PasskeyEnrolment],
        subject: NamedDependency[Subject],
        data: JSONBody[PasskeyRename],
    ) -> PasskeyRead:
        return _read(await enrolment.rename(subject.id, _passkey_id(passkey_id), data.name))

    @delete(
        "/{passkey_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        opt={ERRORS: (400, 404)},
        summary="Remove one of my passkeys",
        description="It can no longer sign in. An id that is not one of the caller's passkeys is 404. The owner "
        "is told by mail.",
    )
    async def remove(
        self, passkey_id: PasskeyId, enrolment: NamedDependency[PasskeyEnrolment], subject: NamedDependency[Subject]
    ) -> None:
        await enrolment.remove(subject.id, _passkey_id(passkey_id))
