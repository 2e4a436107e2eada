"""HTTP endpoints of /api/v1/users/me: the caller's own account, sessions and login history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import structlog
from litestar import Controller, delete, get
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.deps import provide_session_service
from auth_service.domain.sessions.service import SessionService
from auth_service.domain.users.account import Account, LoginPage, SessionRead
from auth_service.lib.crypto.tokens import AccessClaims
from auth_service.lib.errors import NotFound
from auth_service.lib.http import error_responses
from auth_service.lib.pagination import CURSOR_MAX_LENGTH, CURSOR_PATTERN, MAX_LIMIT
from observability.metrics import record_session_revoked

__all__ = ["MeController", "provide_account"]

log = structlog.get_logger()
_BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]


async def provide_account(db_session: NamedDependency[AsyncSession], claims: NamedDependency[AccessClaims]) -> Account:
    return Account(db_session, uuid.UUID(claims.sub))


class MeController(Controller):
    path = "/api/v1/users/me"
    tags = ["account"]
    dependencies = {"account": Provide(provide_account)}

    @get(
        "/sessions",
        summary="My sessions",
        description="Every live session (a login and its refreshes): when it started, when it was last "
        "refreshed, its login's IP address and user agent; `current` marks the caller's own.",
        security=_BEARER,
        responses=error_responses(401, 429, 503),
    )
    async def sessions(
        self, account: NamedDependency[Account], claims: NamedDependency[AccessClaims]
    ) -> list[SessionRead]:
        return await account.sessions(claims.sid, dt.datetime.now(dt.UTC))

    @delete(
        "/sessions/{session_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="End one of my sessions",
        description="Its refresh tokens and its access tokens stop working at once; the other sessions "
        "go on. An id that is not one of the caller's live sessions is 404.",
        dependencies={"sessions": Provide(provide_session_service)},
        security=_BEARER,
        responses=error_responses(400, 401, 404, 429, 503),
    )
    async def end_session(
        self,
        session_id: Annotated[str, Parameter(max_length=64, description="A session id from GET /sessions")],
        account: NamedDependency[Account],
        sessions: NamedDependency[SessionService],
        claims: NamedDependency[AccessClaims],
    ) -> None:
        try:
            family = uuid.UUID(session_id)
        except ValueError:
            raise NotFound("no such session") from None
        if not await account.owns_live_session(family, dt.datetime.now(dt.UTC)):
            raise NotFound("no such session")  # someone else's, ended, or unknown: the same answer
        await sessions.revoke_session(uuid.UUID(claims.sub), family)
        record_session_revoked("self")
        log.info("session.revoked", user_id=claims.sub, current=session_id == claims.sid)

    @get(
        "/logins",
        summary="My login history",
        description="The caller's own login records, newest first; pass `next_cursor` back as `cursor` "
        "for the next page (null on the last).",
        security=_BEARER,
        responses=error_responses(400, 401, 429, 503),
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
