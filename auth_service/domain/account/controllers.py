"""HTTP endpoints of /api/v1/users/me: the caller's own account, its e-mail address and password,
its sessions and its login history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import structlog
from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.account.reads import Account, LoginPage, SessionRead
from auth_service.domain.auth.controllers import Accepted, pair_response
from auth_service.domain.auth.deps import provide_auth_service, provide_client
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.schemas import EmailChangeRequest, PasswordChangeRequest, TokenPair
from auth_service.domain.auth.service import AuthService, ClientInfo
from auth_service.domain.sessions.deps import provide_session_service
from auth_service.domain.sessions.service import SessionService
from auth_service.domain.users.deps import provide_user_service, provide_verification
from auth_service.domain.users.schemas import MeRead
from auth_service.domain.users.service import UserService
from auth_service.domain.users.verification import EmailVerification
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.errors import NotFound, TokenRevoked
from auth_service.lib.http import AUTH, BEARER, ERRORS, ApiController, require_json_body
from auth_service.lib.pagination import CURSOR_MAX_LENGTH, CURSOR_PATTERN, MAX_LIMIT
from auth_service.lib.principal import Subject
from observability.metrics import record_session_revoked

__all__ = ["AccountController", "provide_account"]

log = structlog.get_logger()


async def provide_account(db_session: NamedDependency[AsyncSession], subject: NamedDependency[Subject]) -> Account:
    return Account(db_session, subject.id)


class AccountController(ApiController):
    """/api/v1/users/me: the caller's own account. The changes that check the current password
    (a password or e-mail change) go through AuthService (its password check, failure budget and
    session opening); the reads are Account's."""

    path = "/api/v1/users/me"
    tags = ["account"]
    opt = {AUTH: BEARER}
    errors = (429, 503)
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
    )
    async def me(self, account: NamedDependency[Account]) -> MeRead:
        found = await account.me()
        if found is None:  # deleted or deactivated since the token was issued (the token is dead too)
            raise TokenRevoked
        return found

    @patch(
        "",
        before_request=require_json_body,
        opt={"rate_limit": "api", ERRORS: (409,)},
        summary="Change my e-mail address",
        description="Checks `current_password` like a login; the new address is unverified until the link "
        "mailed to it is used, and the old address is told. An address another account has is 409 CONFLICT.",
    )
    async def change_email(
        self,
        data: JSONBody[EmailChangeRequest],
        auth: NamedDependency[AuthService],
        users: NamedDependency[UserService],
        client: NamedDependency[ClientInfo],
        subject: NamedDependency[Subject],
        account_links: NamedDependency[AccountLinks],
        account: NamedDependency[Account],
    ) -> Response[MeRead]:
        await auth.change_email(subject, data.current_password, data.email, client, users, account_links)
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
    )
    async def resend_verification(
        self,
        verification: NamedDependency[EmailVerification],
        limits: NamedDependency[EndpointLimits],
        subject: NamedDependency[Subject],
        client: NamedDependency[ClientInfo],
    ) -> Response[Accepted]:
        await limits.email(client.ip, f"user:{subject.user_id}")
        await verification.resend(subject.id)
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
    )
    async def change_password(
        self,
        data: JSONBody[PasswordChangeRequest],
        auth: NamedDependency[AuthService],
        users: NamedDependency[UserService],
        client: NamedDependency[ClientInfo],
        subject: NamedDependency[Subject],
    ) -> Response[TokenPair]:
        issued = await auth.change_password(subject, data.current_password, data.new_password, client, users)
        return pair_response(issued)

    @get(
        "/sessions",
        summary="My sessions",
        description="Every live session (a login and its refreshes): when it started, when it was last "
        "refreshed, its login's IP address and user agent; `current` marks the caller's own.",
    )
    async def sessions(self, account: NamedDependency[Account], subject: NamedDependency[Subject]) -> list[SessionRead]:
        return await account.sessions(subject.session_id, dt.datetime.now(dt.UTC))

    @delete(
        "/sessions/{session_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="End one of my sessions",
        description="Its refresh tokens and its access tokens stop working at once; the other sessions "
        "go on. An id that is not one of the caller's live sessions is 404.",
        dependencies={"sessions": Provide(provide_session_service)},
        opt={ERRORS: (400, 404)},
    )
    async def end_session(
        self,
        session_id: Annotated[str, Parameter(max_length=64, description="A session id from GET /sessions")],
        account: NamedDependency[Account],
        sessions: NamedDependency[SessionService],
        subject: NamedDependency[Subject],
    ) -> None:
        try:
            family = uuid.UUID(session_id)
        except ValueError:
            raise NotFound("no such session") from None
        if not await account.owns_live_session(family, dt.datetime.now(dt.UTC)):
            raise NotFound("no such session")  # someone else's, ended, or unknown: the same answer
        await sessions.revoke_session(subject.id, family)
        record_session_revoked("self")
        log.info("session.revoked", user_id=subject.user_id, current=session_id == subject.session_id)

    @get(
        "/logins",
        summary="My login history",
        description="The caller's own login records, newest first; pass `next_cursor` back as `cursor` "
        "for the next page (null on the last).",
        opt={ERRORS: (400,)},
    )
    async def logins(
        self,
        account: NamedDependency[Account],
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Records per page")] = 20,
        cursor: Annotated[
            str | None,
            Parameter(
                pattern=CURSOR_PATTERN, max_length=CURSOR_MAX_LENGTH, description="`next_cursor` of the page before"
            ),
        ] = None,
    ) -> LoginPage:
        return await account.logins(limit, cursor)
