"""The audit log's one writer: who did what to whom, in the transaction of the change itself.

`record` adds the event's INSERT to the caller's open transaction, so the event and the change
commit together or not at all (one extra statement, no extra round trip of its own: no
BEGIN/COMMIT). `audit_events_total{action}` counts an event once its transaction has committed
(a session event below), never for a change that was rolled back.

Refused admin actions leave a trace too (ASVS V16.3): `denied` writes an `admin.denied` event
(the operation, the reason: `forbidden` for a caller without the role, `last_admin` for a change
that would leave no admin who can sign in) in a transaction of its own, and logs the same as a
structured warning.

Events never hold a secret: `details` keys that name one (password, hash, token, secret, code)
are refused here, before anything is written, and the test suite reads every row it wrote.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec
import structlog
from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from auth_service.lib.principal import authenticated_subject
from db.sql import audit_events
from observability.metrics import AUDIT_ACTIONS, record_audit_event

__all__ = ["ACTIONS", "CLI", "DENIED", "Actor", "AuditEntry", "audit_insert", "denied", "provide_actor", "record"]

log = structlog.get_logger()

# The contract's actions (DESIGN.md "Admin API"), named once in observability/metrics.py (which
# starts their counters at 0 and cannot import auth_service); `record` refuses any other.
ACTIONS = AUDIT_ACTIONS
_KNOWN = frozenset(ACTIONS)
_SECRET_KEY = re.compile(r"pass|hash|token|secret|code|key", re.IGNORECASE)
_PENDING = "audit_actions"
DENIED = "admin.denied"


class Actor(msgspec.Struct, frozen=True):
    """Who acts: a user (an admin, or the account's owner) from an IP in a request, or the CLI
    (no user: `id` None and `via` "cli", which lands in the event's details)."""

    id: uuid.UUID | None = None
    ip: str | None = None
    request_id: str | None = None
    via: str | None = None

    def as_user(self, user_id: uuid.UUID | str) -> Actor:
        """The same request, acted on by a known user (the token's subject)."""
        return Actor(uuid.UUID(str(user_id)), self.ip, self.request_id, self.via)


CLI = Actor(via="cli")


class _RequestIp(Protocol):
    def request_ip(self, request: Request[Any, Any, Any]) -> str: ...


def provide_actor(request: Request[Any, Any, Any], authenticator: NamedDependency[Any]) -> Actor:
    """The request as an actor: its authenticated subject (none on a public route, where a
    service names the user it acts for with `as_user`), its client IP (TRUSTED_PROXIES applied)
    and X-Request-ID."""
    reader: _RequestIp = authenticator
    request_id = request.scope.get("state", {}).get("request_id")
    subject = authenticated_subject(request.scope)
    return Actor(
        None if subject is None else subject.id,
        reader.request_ip(request),
        None if request_id is None else str(request_id),
    )


class AuditEntry(msgspec.Struct, frozen=True):
    action: str
    target_id: uuid.UUID | str | None
    details: Mapping[str, Any] = msgspec.field(default_factory=dict)
    target_type: str = "user"


def _row(actor: Actor, entry: AuditEntry) -> dict[str, Any]:
    if entry.action not in _KNOWN:
        raise ValueError(f"unknown audit action {entry.action!r}")
    secret = [key for key in entry.details if _SECRET_KEY.search(key)]
    if secret:
        raise ValueError(f"audit details never hold secrets: refused keys {secret}")
    details = dict(entry.details)
    if actor.via:
        details["via"] = actor.via
    return {
        "id": uuid.uuid4(),
        "actor_id": actor.id,
        "actor_ip": actor.ip,
        "action": entry.action,
        "target_type": entry.target_type if entry.target_id is not None else None,
        "target_id": None if entry.target_id is None else str(entry.target_id),
        "details": details,
        "request_id": actor.request_id,
    }


def audit_insert(actor: Actor, entries: Iterable[AuditEntry]) -> Any:
    """One INSERT of every entry (a multi-row VALUES): one statement whatever their number."""
    return insert(audit_events).values([_row(actor, entry) for entry in entries])


async def record(session: AsyncSession, actor: Actor, *entries: AuditEntry) -> None:
    """Write the events in the session's open transaction (the caller commits)."""
    if not entries:
        return
    await session.execute(audit_insert(actor, entries))
    session.sync_session.info.setdefault(_PENDING, []).extend(entry.action for entry in entries)


async def denied(
    session: AsyncSession, actor: Actor, operation: str, target_id: uuid.UUID | str | None, reason: str
) -> None:
    """Record a refused admin action in its own transaction (the session must have none open:
    the refused change's was rolled back) and log it (not for the CLI, whose own error line
    already tells the operator: one line per refusal)."""
    if actor.via != "cli":
        log.warning(
            "admin.denied",
            actor_id=None if actor.id is None else str(actor.id),
            operation=operation,
            target_id=None if target_id is None else str(target_id),
            reason=reason,
            request_id=actor.request_id,
        )
    await record(session, actor, AuditEntry(DENIED, target_id, {"operation": operation, "reason": reason}))
    await session.commit()


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for action in session.info.pop(_PENDING, ()):
        record_audit_event(action)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
