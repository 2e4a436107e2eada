"""HTTP endpoints of /api/v1/admin/clients: the OAuth clients, registered and managed by the
`admin` role (the store and its rules: domain/oauth/clients.py)."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from auth_service.domain.admin.service import ADMIN_ROLE
from auth_service.domain.oauth.clients import (
    CURSOR_PATTERN,
    ClientCreate,
    ClientCreated,
    ClientPage,
    ClientPatch,
    ClientRead,
    ClientStore,
)
from auth_service.domain.oauth.deps import provide_client_store
from auth_service.lib.audit import Actor
from auth_service.lib.errors import ErrorEnvelope
from auth_service.lib.http import AUTH, BEARER, ERRORS, ApiController, require_json_body
from auth_service.lib.pagination import MAX_LIMIT
from auth_service.lib.principal import requires_role

__all__ = ["AdminClientsController"]

_ADMIN_OPERATION = "admin_operation"  # counted by AdminMetrics (domain/admin/controllers.py)


def _op(name: str, *errors: int) -> dict[str, object]:
    return {_ADMIN_OPERATION: name, ERRORS: errors}


_ClientId = Annotated[str, Parameter(min_length=1, max_length=64, description="The client's id")]
_Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Items per page (at most 100)")]
_Cursor = Annotated[
    str | None,
    Parameter(pattern=CURSOR_PATTERN, max_length=90, description="`next_cursor` of the page before"),
]
_PUBLIC_CONFLICT = {
    409: ResponseSpec(
        data_container=ErrorEnvelope,
        description="CONFLICT: a public client has no secret to rotate",
        generate_examples=False,
    )
}
_CREATED = "The client; a confidential client's `client_secret` appears here once and is never shown again."


class AdminClientsController(ApiController):
    """OAuth / OpenID Connect clients, for the `admin` role (everyone else: 403 FORBIDDEN; no
    token: 401). Every change is audited in its own transaction (`client.*`)."""

    path = "/api/v1/admin/clients"
    tags = ["admin"]
    guards = [requires_role(ADMIN_ROLE)]
    opt = {AUTH: BEARER}
    errors = (400, 403, 429, 503)
    dependencies = {"clients": Provide(provide_client_store)}

    @get(
        "/",
        opt=_op("clients.list"),
        summary="List OAuth clients",
        description="Newest first. Pass `next_cursor` back as `cursor` for the next page (null on the last). "
        "Secrets are never shown.",
    )
    async def list_clients(
        self, clients: NamedDependency[ClientStore], limit: _Limit = 50, cursor: _Cursor = None
    ) -> ClientPage:
        return await clients.list_clients(limit, cursor)

    @post(
        "/",
        before_request=require_json_body,
        opt=_op("clients.create"),
        status_code=HTTP_201_CREATED,
        summary="Register an OAuth client",
        description="`type` confidential (the default: it gets a `client_secret`, shown once in this answer "
        "and stored only as a hash) or public (no secret; PKCE). `grant_types` default to authorization_code "
        "and refresh_token (refresh_token needs authorization_code; a public client cannot have "
        "client_credentials); authorization_code needs at least one redirect URI. Redirect URIs use the scheme https, "
        "http on a loopback host, or for a public client a private-use scheme (com.example.app:/cb); no "
        "fragment, no user info; stored and compared exactly. `scopes` default to openid profile email "
        "offline_access. A broken rule is 400 VALIDATION_ERROR naming the field.",
        responses={201: ResponseSpec(data_container=ClientCreated, description=_CREATED)},
    )
    async def create_client(
        self, data: JSONBody[ClientCreate], clients: NamedDependency[ClientStore], actor: NamedDependency[Actor]
    ) -> Response[ClientCreated]:
        return Response(await clients.create(data, actor), status_code=HTTP_201_CREATED)

    @get("/{client_id:str}", opt=_op("clients.get", 404), summary="One OAuth client")
    async def get_client(self, client_id: _ClientId, clients: NamedDependency[ClientStore]) -> ClientRead:
        return await clients.read(client_id)

    @patch(
        "/{client_id:str}",
        before_request=require_json_body,
        opt=_op("clients.update", 404),
        summary="Change an OAuth client",
        description="Only the fields given change (`type` cannot); the result must pass the rules of a new "
        "client. `is_active: false` ends every session opened through the client at once (its refresh and "
        "access tokens stop working); activating it again revives none.",
    )
    async def update_client(
        self,
        client_id: _ClientId,
        data: JSONBody[ClientPatch],
        clients: NamedDependency[ClientStore],
        actor: NamedDependency[Actor],
    ) -> ClientRead:
        return await clients.update(client_id, data, actor)

    @delete(
        "/{client_id:str}",
        opt=_op("clients.delete", 404),
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete an OAuth client",
        description="Its consents go with it, and every session opened through it ends at once (its refresh "
        "and access tokens stop working).",
    )
    async def delete_client(
        self, client_id: _ClientId, clients: NamedDependency[ClientStore], actor: NamedDependency[Actor]
    ) -> None:
        await clients.delete(client_id, actor)

    @post(
        "/{client_id:str}/secret",
        opt=_op("clients.secret_rotate", 404),
        status_code=200,
        summary="Replace a confidential client's secret",
        description="The new `client_secret` is in this answer, once; the old one stops working at once. "
        "Sessions stay. A public client has no secret: 409 CONFLICT.",
        responses={
            200: ResponseSpec(data_container=ClientCreated, description="The client with its new secret"),
            **_PUBLIC_CONFLICT,
        },
    )
    async def rotate_secret(
        self, client_id: _ClientId, clients: NamedDependency[ClientStore], actor: NamedDependency[Actor]
    ) -> ClientCreated:
        return await clients.rotate_secret(client_id, actor)
