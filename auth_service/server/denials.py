"""The trace of a refused request (ASVS V16.3): a caller without the role a guard asks for.

Guards (lib/principal.py `requires_role`) hand their refusals here before answering 403: an
`admin.denied` audit event (actor, IP, request id, the operation, the target) in a transaction
of its own, and the same as a structured warning (lib/audit.py `denied`). A database that cannot
take the event does not turn the 403 into a 500: the warning still says what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.deps import Authenticator
from auth_service.lib.audit import Actor, denied
from auth_service.lib.principal import Subject

__all__ = ["Denials"]

log = structlog.get_logger()
_TARGET_MAX = 64  # the path's id, unchecked yet (guards run before parameters are parsed)


class Denials:
    def __init__(self, session_factory: Callable[[], AsyncSession], authenticator: Authenticator) -> None:
        self._sessions = session_factory
        self._authenticator = authenticator

    async def forbidden(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, subject: Subject
    ) -> None:
        request_id = connection.scope.get("state", {}).get("request_id")
        actor = Actor(
            subject.id,
            self._authenticator.request_ip(connection),  # type: ignore[arg-type]
            None if request_id is None else str(request_id),
        )
        operation = str(handler.opt.get("admin_operation") or handler.handler_name)
        target = connection.path_params.get("user_id")
        try:
            async with self._sessions() as session:
                await denied(
                    session, actor, operation, None if target is None else str(target)[:_TARGET_MAX], "forbidden"
                )
        except Exception as exc:  # the 403 stands; the warning above it already says who and what
            log.warning("admin.denied_not_recorded", error=type(exc).__name__, request_id=actor.request_id)
