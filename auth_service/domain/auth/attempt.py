"""A login between its steps (authenticate → challenge → open session), and why a first step
failed: what the steps hand each other, apart from the service that runs them."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.domain.auth.issue import ClientInfo
from auth_service.domain.auth.limits import LoginGate
from auth_service.domain.auth.repository import LoginUser
from auth_service.lib.crypto.passwords import VerifyResult

__all__ = ["LoginAttempt", "failure_reason"]


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A login whose password was right for an active user, between its steps."""

    user: LoginUser
    username: str
    client: ClientInfo
    user_agent: str | None
    result: VerifyResult
    gate: LoginGate
    # How it was proven (RFC 8176): the session's tokens carry it, refreshes keep it.
    amr: tuple[str, ...] = ("pwd",)


def failure_reason(user: LoginUser | None, password_ok: bool) -> str | None:
    if user is None:
        return "unknown_user"
    if not password_ok:
        return "bad_password"
    if not user.is_active:
        return "inactive"
    return None
