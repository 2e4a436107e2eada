"""The passwordless login: a discoverable passkey instead of a username and password.

`begin` keeps a ceremony (a challenge, single-use, CEREMONY_TTL_SECONDS) and answers its id with
the options; `finish` takes the ceremony back once, checks the assertion (domain/auth/passkeys.py)
and then goes the password login's way from its second step on: `AuthService.challenge` and
`open_session` with a `LoginAttempt` whose proof is the passkey, so the login record, the
notification mail, the suspicious-login rules and the per-IP login limit are the same.

Refusals are recorded like failed logins (`passkey_<reason>` in login_records.failure_reason,
with the user when the credential named one) and all answer 401 AUTH_INVALID_CREDENTIALS.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.issue import ClientInfo, IssuedTokens
from auth_service.domain.auth.limits import EndpointLimits, LoginGate
from auth_service.domain.auth.passkeys import PasskeyAssertions, PasskeyRefused
from auth_service.domain.auth.repository import LoginRecordRepository
from auth_service.domain.auth.service import AuthService, LoginAttempt
from auth_service.lib.crypto.passwords import VerifyResult
from auth_service.lib.errors import InvalidCredentials
from auth_service.lib.redis.ceremonies import Ceremony, CeremonyStore, new_ceremony_id
from observability import metrics

__all__ = ["PasskeyLogin", "PasskeyOptions"]

log = structlog.get_logger()

_KIND = "login"
_USER_AGENT_MAX = 512


class PasskeyOptions(NamedTuple):
    ceremony_id: str
    public_key: dict[str, Any]
    expires_in: int


class PasskeyLogin:
    """One request's passwordless login.

    Args:
        session: the request's session.
        assertions: the passkey check.
        ceremonies: where the challenge waits between the two requests.
        auth: the login's later steps (challenge, open_session).
        limits: the per-IP login limit.
    """

    def __init__(
        self,
        session: AsyncSession,
        assertions: PasskeyAssertions,
        ceremonies: CeremonyStore,
        auth: AuthService,
        limits: EndpointLimits,
    ) -> None:
        self._session = session
        self._assertions = assertions
        self._ceremonies = ceremonies
        self._auth = auth
        self._limits = limits

    async def begin(self) -> PasskeyOptions:
        """A new ceremony: its id and the options for `navigator.credentials.get()`."""
        options = await self._assertions.options_for(None)
        ceremony_id = new_ceremony_id()
        await self._ceremonies.put(_KIND, ceremony_id, ceremony_id, Ceremony(options.challenge))
        return PasskeyOptions(ceremony_id, options.public_key, self._ceremonies.ttl)

    async def finish(self, ceremony_id: str, credential: dict[str, Any], client: ClientInfo) -> IssuedTokens:
        """Check the assertion answering the ceremony and open a session for its user.

        Raises:
            InvalidCredentials: unknown or used ceremony, unknown credential, bad signature, wrong
                origin or RP, a lower counter (a clone), an inactive user.
            RateLimited: over the IP's login limit (checked first); ServiceUnavailable: Redis down.
            EmailUnverified: the account's address must be verified first.
        """
        await self._limits.passkey_login(client.ip)
        user_agent = (client.user_agent or "")[:_USER_AGENT_MAX] or None
        try:
            ceremony = await self._ceremonies.take(_KIND, ceremony_id, ceremony_id)
            if ceremony is None:
                raise PasskeyRefused("expired")
            verified = await self._assertions.verify(credential, ceremony.challenge, None)
            user = await LoginRecordRepository(session=self._session).for_login(verified.username)
            await self._session.commit()
            if user is None or user.id != verified.user_id or not user.is_active:
                raise PasskeyRefused("inactive", user_id=verified.user_id, username=verified.username)
        except PasskeyRefused as refused:
            await self._refused(refused, client, user_agent)
            raise
        # The passkey is the whole login: possession of the key and, user verification being
        # required, the device's PIN or biometric: two factors (RFC 8176 `hwk` and `mfa`).
        amr = ("hwk", "mfa") if verified.user_verified else ("hwk",)
        gate = LoginGate(None, False)
        attempt = LoginAttempt(user, user.username, client, user_agent, VerifyResult(ok=True), gate, amr)
        try:
            await self._auth.challenge(attempt)
            issued = await self._auth.open_session(attempt)
        except InvalidCredentials:
            metrics.record_passkey_login("invalid")
            raise
        metrics.record_passkey_login("success")
        log.info("passkey.login_succeeded", user_id=str(user.id), credential=str(verified.passkey_id))
        return issued

    async def _refused(self, refused: PasskeyRefused, client: ClientInfo, user_agent: str | None) -> None:
        """Record a refused assertion as a failed login (in its own transaction)."""
        await self._session.rollback()
        await LoginRecordRepository(session=self._session).record_failure(
            user_id=refused.user_id,
            username=(refused.username or "")[:255],
            ip=client.ip[:45],
            user_agent=user_agent,
            reason=f"passkey_{refused.reason}",
        )
        await self._session.commit()
        metrics.record_passkey_login(refused.reason)
        log.info("passkey.login_failed", reason=refused.reason, ip=client.ip)
