"""The challenge: a right password for a user with a second factor (or whose role requires one)
ends here, with 401 AUTH_MFA_REQUIRED and a pending login instead of a session."""

from __future__ import annotations

import structlog

from auth_service.domain.auth.mfa.factors import MfaKit, methods_for
from auth_service.domain.auth.mfa.pending import ENROLL, PendingLogin
from auth_service.domain.auth.repository import LoginUser
from auth_service.lib.errors import MfaChallenge, MfaRequired
from observability import metrics

__all__ = ["second_factor_required"]

log = structlog.get_logger()


def second_factor_required(kit: MfaKit | None, user: LoginUser) -> list[str]:
    """The methods the login must go on with; [] when the session may open now."""
    return [] if kit is None else methods_for(user, kit.required_roles)


async def raise_challenge(
    kit: MfaKit, user: LoginUser, methods: list[str], *, username: str, ip: str, ua: str | None
) -> None:
    """Store the pending login and raise AUTH_MFA_REQUIRED with its token.

    Raises:
        MfaRequired: always (the caller has already given the password's budget slot back).
        ServiceUnavailable: Redis is down.
    """
    pending = PendingLogin(user.id, username, ip, ua, user.tokens_valid_after, tuple(methods))
    token = await kit.pending.create(pending)
    metrics.record_mfa_challenge(ENROLL if methods == [ENROLL] else methods[0], "required")
    log.info("login.mfa_required", user_id=str(user.id), methods=methods, ip=ip)
    raise MfaRequired(MfaChallenge(mfa_token=token, methods=methods, expires_in=kit.pending.ttl))
