"""HTTP endpoints of /api/v1/admin (users, login records and the audit log, for the `admin`
role), and the middleware that counts them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from typing import Annotated

import structlog
from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.domain.admin.deps import provide_admin_reads, provide_admin_service
from auth_service.domain.admin.reads import (
    AdminReads,
    AuditEventPage,
    AuditFilter,
    LoginRecordFilter,
    LoginRecordPage,
    UserFilter,
    UserPage,
)
from auth_service.domain.admin.schemas import AdminUserCreate, AdminUserPatch
from auth_service.domain.admin.service import ADMIN_ROLE, AdminService, AdminUserRead, parse_id
from auth_service.lib.audit import Actor
from auth_service.lib.errors import InvalidInput
from auth_service.lib.http import AUTH, BEARER, ERRORS, ApiController, require_json_body
from auth_service.lib.pagination import CURSOR_MAX_LENGTH, CURSOR_PATTERN, MAX_LIMIT
from auth_service.lib.principal import requires_role
from observability.metrics import record_admin_request

__all__ = ["AdminController", "AdminMetrics"]

log = structlog.get_logger()

# ---- /api/v1/admin ------------------------------------------------------------------------------

_ADMIN_OPERATION = "admin_operation"
_OUTCOMES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict"}
_OUTCOMES |= {413: "invalid", 415: "invalid", 429: "limited"}
_ACTION_PATTERN = r"^[a-z][a-z_.]{0,63}$(?!\n)"
_ROLE_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$(?!\n)"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # PostgreSQL refuses NUL in text: a 400 here, not a 500 there


class AdminMetrics:
    """The app's ASGI middleware for the admin routes (those whose opt names an
    `admin_operation`): admin_requests_total{operation,outcome}, counted from the status every
    request ends with. It runs outside the authentication middleware, so a 401 is counted as a
    guard's 403 is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        operation = handler.opt.get(_ADMIN_OPERATION) if handler is not None else None
        if scope["type"] != ScopeType.HTTP or operation is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            outcome = "ok" if status < 400 else _OUTCOMES.get(status, "error")
            record_admin_request(str(operation), outcome)


def _op(name: str, *errors: int) -> dict[str, object]:
    """The operation's name (its metric label and audit name) and what it answers beyond the
    controller's errors."""
    return {_ADMIN_OPERATION: name, ERRORS: errors}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A filter's instant in UTC; one without a zone is read as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant: the edge
        edge = dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max
        return edge.replace(tzinfo=dt.UTC)


def _ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput("ip", "not an IP address (expected one like 203.0.113.7 or 2001:db8::1)") from None


_Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Items per page (at most 100)")]
_Cursor = Annotated[
    str | None,
    Parameter(pattern=CURSOR_PATTERN, max_length=CURSOR_MAX_LENGTH, description="`next_cursor` of the page before"),
]
_Since = Annotated[dt.datetime | None, Parameter(description="From this instant on (ISO 8601; no zone: UTC)")]
_Until = Annotated[dt.datetime | None, Parameter(description="Before this instant (ISO 8601; no zone: UTC)")]
_UserId = Annotated[str, Parameter(max_length=64, description="The user's id")]


class AdminController(ApiController):
    """Users, their sessions and the records of what happened, for the `admin` role (everyone
    else: 403 FORBIDDEN; no token: 401). Every change is audited in its own transaction."""

    path = "/api/v1/admin"
    tags = ["admin"]
    guards = [requires_role(ADMIN_ROLE)]
    opt = {AUTH: BEARER}
    errors = (400, 403, 429, 503)
    dependencies = {"admin": Provide(provide_admin_service), "reads": Provide(provide_admin_reads)}

    @get(
        "/users",
        opt=_op("users.list"),
        summary="List users",
        description="Newest first; `q` matches a username or e-mail prefix (case-insensitive), `role` a role, "
        "`active` the flag. Pass `next_cursor` back as `cursor` for the next page (null on the last).",
    )
    async def list_users(
        self,
        reads: NamedDependency[AdminReads],
        q: Annotated[
            str | None,
            Parameter(min_length=1, max_length=255, pattern=_PRINTABLE, description="Name or address prefix"),
        ] = None,
        role: Annotated[str | None, Parameter(pattern=_ROLE_PATTERN, description="Users with this role")] = None,
        active: Annotated[bool | None, Parameter(description="Only active (true) or deactivated (false) users")] = None,
        limit: _Limit = 50,
        cursor: _Cursor = None,
    ) -> UserPage:
        return await reads.users(UserFilter(q, role, active), limit, cursor)

    @post(
        "/users",
        before_request=require_json_body,
        opt=_op("users.create", 409),
        status_code=HTTP_201_CREATED,
        summary="Create a user",
        description="With a `password` (the policy applies) the user is verified at once; without one the "
        "user gets an invitation mail with a set-password link (valid INVITATION_TTL_HOURS) and is verified by "
        "using it. A taken username or e-mail is 409 CONFLICT.",
    )
    async def create_user(
        self,
        data: JSONBody[AdminUserCreate],
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> Response[AdminUserRead]:
        user = await admin.create(data, actor)
        return Response(user, status_code=HTTP_201_CREATED)

    @get(
        "/users/{user_id:str}",
        opt=_op("users.get", 404),
        summary="One user",
    )
    async def get_user(self, user_id: _UserId, admin: NamedDependency[AdminService]) -> AdminUserRead:
        return await admin.get(parse_id(user_id))

    @patch(
        "/users/{user_id:str}",
        before_request=require_json_body,
        opt=_op("users.update", 404, 409),
        summary="Change a user",
        description="Only the fields given change. A role change or a deactivation makes the user's existing "
        "tokens stop working at once (roles are in the tokens); an activation leaves the old ones dead. A new "
        "address ends the links mailed to the old one, which is told; it is verified if the old one was. The "
        "last active admin cannot be deactivated or lose `admin` (409); an address taken is 409 too.",
    )
    async def update_user(
        self,
        user_id: _UserId,
        data: JSONBody[AdminUserPatch],
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> AdminUserRead:
        return await admin.update(parse_id(user_id), data, actor)

    @delete(
        "/users/{user_id:str}",
        opt=_op("users.delete", 404, 409),
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a user",
        description="Its sessions and links go with it; login records keep their rows with `user_id` null and "
        "the typed username. The last active admin cannot be deleted (409).",
    )
    async def delete_user(
        self,
        user_id: _UserId,
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> None:
        await admin.delete(parse_id(user_id), actor)

    @post(
        "/users/{user_id:str}/logout",
        opt=_op("users.logout", 404),
        status_code=HTTP_204_NO_CONTENT,
        summary="End every session of a user",
        description="Every refresh token and access token of the user stops working at once.",
    )
    async def logout_user(
        self,
        user_id: _UserId,
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> None:
        await admin.logout_all(parse_id(user_id), actor)

    @post(
        "/users/{user_id:str}/password-reset",
        opt=_op("users.password_reset", 404, 409),
        status_code=HTTP_202_ACCEPTED,
        summary="Mail a user a password-reset link",
        description="The link is single-use and valid PASSWORD_RESET_TTL_MINUTES; the current password keeps "
        "working until it is used. A deactivated user is 409.",
    )
    async def send_password_reset(
        self,
        user_id: _UserId,
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> Response[None]:
        await admin.send_reset(parse_id(user_id), actor)
        return Response(None, status_code=HTTP_202_ACCEPTED)

    @delete(
        "/users/{user_id:str}/mfa",
        opt=_op("users.mfa_reset", 404),
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a user's second factors",
        description="Emergency access: TOTP, passkeys and recovery codes are removed; the next login asks for "
        "the password only.",
    )
    async def reset_mfa(
        self,
        user_id: _UserId,
        admin: NamedDependency[AdminService],
        actor: NamedDependency[Actor],
    ) -> None:
        await admin.reset_mfa(parse_id(user_id), actor)

    @get(
        "/login-records",
        opt=_op("login_records.list"),
        summary="Login records",
        description="Every login attempt, newest first, filtered by user, typed username (exact), IP, outcome "
        "and time window; each filter is an index range, fast on millions of rows.",
    )
    async def login_records(
        self,
        reads: NamedDependency[AdminReads],
        user_id: Annotated[uuid.UUID | None, Parameter(description="The user's id")] = None,
        username: Annotated[
            str | None, Parameter(max_length=255, pattern=_PRINTABLE, description="The typed username")
        ] = None,
        ip: Annotated[
            str | None,
            Parameter(
                pattern=r"^[0-9A-Fa-f:.]{2,45}$",
                # What _ip accepts: an address, not any string of its characters.
                schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                description="The client IP (IPv4 or IPv6, any spelling)",
            ),
        ] = None,
        success: Annotated[bool | None, Parameter(description="Only successes (true) or failures (false)")] = None,
        since: _Since = None,
        until: _Until = None,
        limit: _Limit = 50,
        cursor: _Cursor = None,
    ) -> LoginRecordPage:
        where = LoginRecordFilter(user_id, username, _ip(ip), success, _utc(since), _utc(until))
        return await reads.login_records(where, limit, cursor)

    @get(
        "/audit-events",
        opt=_op("audit_events.list"),
        summary="Audit events",
        description="What admins, the CLI and users did to accounts, newest first, filtered by actor, action, "
        "target and time window. The log is append-only.",
    )
    async def audit_events(
        self,
        reads: NamedDependency[AdminReads],
        actor_id: Annotated[uuid.UUID | None, Parameter(description="Who acted (a user id)")] = None,
        action: Annotated[str | None, Parameter(pattern=_ACTION_PATTERN, description="e.g. user.roles")] = None,
        target_id: Annotated[
            str | None, Parameter(max_length=64, pattern=_PRINTABLE, description="What was acted on")
        ] = None,
        since: _Since = None,
        until: _Until = None,
        limit: _Limit = 50,
        cursor: _Cursor = None,
    ) -> AuditEventPage:
        where = AuditFilter(actor_id, action, target_id, _utc(since), _utc(until))
        return await reads.audit_events(where, limit, cursor)
