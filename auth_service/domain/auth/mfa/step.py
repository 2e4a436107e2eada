"""The second step of a login: POST /api/v1/auth/mfa with the pending login's token and one
proof (a TOTP code, a recovery code, or a passkey's assertion answering the challenge that
POST /auth/mfa/webauthn/options kept for this token), then the same session opening as a
password-only login (domain/auth/service.py `open_session`).

The order makes every rule hold under concurrency:
1. the token is taken (one attempt counted, IP checked: one script);
2. the user's RATE_LIMIT_MFA slot is spent and a slot of the username's failure budget reserved;
3. the user is read again: a revocation since the password check (password change, logout
   everywhere, deactivation) ends the login, and its token with it;
4. the proof is checked; what it spends (a TOTP step, a recovery code, a passkey's counter) is
   committed at once, so a code is used even if the rest fails;
5. the token is consumed (one DEL: of two right proofs only one wins);
6. the session opens as for a password login, with `amr`, only while the user is still as step 3
   read it (the opening statement's own check): a revocation after the read also ends the login.
A wrong proof records a failed login with reason `mfa_failed` and keeps its budget slot.

Steps 3 and 4 run without a transaction of their own (each statement commits alone, as the
password login's read does), and the read brings the user's TOTP authenticator along: with a
TOTP code the second step runs two statements (the read, the step's claim) and no BEGIN or COMMIT
before the session's own (`bench/mfa.py` measures it against the password login).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.issue import ClientInfo, IssuedTokens
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.factors import MfaKit, check_recovery_code, check_totp
from auth_service.domain.auth.mfa.notify import recovery_code_used
from auth_service.domain.auth.mfa.pending import PendingLogin, TakenLogin, token_digest
from auth_service.domain.auth.mfa.store import FactorStore, TotpRow
from auth_service.domain.auth.passkeys import PasskeyAssertions, PasskeyRefused
from auth_service.domain.auth.repository import LoginUser
from auth_service.domain.auth.service import NO_TRANSACTION, AuthService, LoginAttempt
from auth_service.lib.crypto.passwords import VerifyResult
from auth_service.lib.errors import InvalidCredentials, InvalidInput, MfaInvalid
from auth_service.lib.redis.ceremonies import Ceremony, CeremonyStore
from observability import metrics

__all__ = ["Proof", "SecondStep", "WebAuthnChallenge"]

log = structlog.get_logger()

_CEREMONY = "mfa"  # the ceremony store's kind for a second step's passkey challenge


@dataclass(frozen=True, slots=True)
class Proof:
    """Exactly one second-factor answer (the request body without its token)."""

    code: str | None = None
    recovery_code: str | None = None
    webauthn: dict[str, Any] | None = None  # the browser's PublicKeyCredential.toJSON()

    @classmethod
    def of(
        cls,
        code: str | msgspec.UnsetType,
        recovery_code: str | msgspec.UnsetType,
        webauthn: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET,
    ) -> Proof:
        """From a request's optional fields; anything but exactly one is a validation error."""
        if sum(value is not msgspec.UNSET for value in (code, recovery_code, webauthn)) != 1:
            raise InvalidInput("body", "give exactly one of code, recovery_code, webauthn", reason="one_proof")
        if not isinstance(webauthn, msgspec.UnsetType):
            return cls(webauthn=webauthn)
        if not isinstance(code, msgspec.UnsetType):
            return cls(code=str(code))
        return cls(recovery_code=str(recovery_code))

    @property
    def method(self) -> str:
        if self.webauthn is not None:
            return "webauthn"
        return "totp" if self.code is not None else "recovery_code"


@dataclass(frozen=True, slots=True)
class WebAuthnChallenge:
    """Assertion options for a pending login's passkeys, and how long their challenge lives."""

    public_key: dict[str, Any]
    expires_in: int


class SecondStep:
    """Finishes pending logins. Commits its session.

    Args:
        session: the request's database session.
        auth: the login's own steps (open_session) on the same session.
        kit: the second factors' keys and Redis state.
        limits: the rate-limit policy.
        passkeys: checks a passkey's assertion (domain/auth/passkeys.py).
        ceremonies: where a passkey challenge waits, keyed by the pending login's token.
    """

    def __init__(
        self,
        session: AsyncSession,
        auth: AuthService,
        kit: MfaKit,
        limits: EndpointLimits,
        passkeys: PasskeyAssertions,
        ceremonies: CeremonyStore,
    ) -> None:
        self._session = session
        self._auth = auth
        self._kit = kit
        self._limits = limits
        self._store = FactorStore(session)
        self._passkeys = passkeys
        self._ceremonies = ceremonies

    async def webauthn_options(self, mfa_token: str, ip: str) -> WebAuthnChallenge:
        """A challenge for the pending login's passkeys, single use, kept for this token only
        (a newer one replaces it). Counts no attempt: only an answer does.

        Raises:
            MfaInvalid: unknown, used, expired or dead token, another IP, or a login whose user
                has no passkey (its `methods` have no "webauthn").
        """
        login = await self._kit.pending.peek(mfa_token, ip)
        if login is None or "webauthn" not in login.methods:
            raise MfaInvalid
        options = await self._passkeys.options_for(login.user_id)
        await self._ceremonies.put(_CEREMONY, str(login.user_id), token_digest(mfa_token), Ceremony(options.challenge))
        return WebAuthnChallenge(options.public_key, self._ceremonies.ttl)

    async def finish(self, mfa_token: str, proof: Proof, client: ClientInfo) -> IssuedTokens:
        """Check the proof for the pending login and open its session.

        Raises:
            MfaInvalid: unknown, used, expired or dead token, another IP, or a wrong proof.
            RateLimited: over RATE_LIMIT_MFA or the username's failure budget.
            ServiceUnavailable: Redis is down.
        """
        taken = await self._kit.pending.take(mfa_token, client.ip)
        if taken is None:
            metrics.record_mfa_challenge(proof.method, "invalid_token")
            raise MfaInvalid
        login = taken.login
        gate = await self._limits.before_second_step(client.ip, login.username, str(login.user_id))
        await self._session.connection(execution_options=NO_TRANSACTION)
        user, totp = await self._auth.records.for_second_step(login.username)
        if not _unchanged(user, login):
            await self._session.commit()
            await self._kit.pending.consume(taken)  # a dead login: its token goes with it
            metrics.record_mfa_challenge(proof.method, "invalid_token")
            raise MfaInvalid
        assert user is not None
        amr_method = await self._prove(login.user_id, mfa_token, proof, totp)
        await self._session.commit()  # (nothing is pending: each statement committed alone)
        if amr_method is None:
            await self._failed(taken, proof)
            raise MfaInvalid  # (_failed raises)
        if not await self._kit.pending.consume(taken):
            metrics.record_mfa_challenge(proof.method, "invalid_token")
            raise MfaInvalid  # another request finished this login first
        if proof.recovery_code is not None:
            await recovery_code_used(self._session, self._store, login.user_id, client.ip)
        amr = ("pwd", amr_method, "mfa")
        attempt = LoginAttempt(user, login.username, client, login.user_agent, VerifyResult(ok=True), gate, amr)
        try:
            issued = await self._auth.open_session(attempt)
        except InvalidCredentials:
            # Revoked after the read (the opening statement found the user changed; recorded as
            # credentials_changed): for this endpoint, a login that ended.
            metrics.record_mfa_challenge(proof.method, "invalid_token")
            raise MfaInvalid from None
        metrics.record_mfa_challenge(proof.method, "success")
        return issued

    async def _prove(self, user_id: uuid.UUID, mfa_token: str, proof: Proof, totp: TotpRow | None) -> str | None:
        """The `amr` value of a right proof, None for a wrong one: one branch per kind."""
        if proof.webauthn is not None:
            ceremony = await self._ceremonies.take(_CEREMONY, str(user_id), token_digest(mfa_token))
            if ceremony is None:
                return None  # no options asked for this token, or their challenge used or expired
            try:
                await self._passkeys.verify(proof.webauthn, ceremony.challenge, user_id)
            except PasskeyRefused:
                return None  # another user's or unknown passkey, bad signature, a clone (logged)
            return "hwk"
        if proof.code is not None:
            return "otp" if await check_totp(self._store, self._kit, user_id, proof.code, row=totp) else None
        if proof.recovery_code is not None:
            return "otp" if await check_recovery_code(self._store, self._kit, user_id, proof.recovery_code) else None
        return None

    async def _failed(self, taken: TakenLogin, proof: Proof) -> None:
        """Record the failed second step (`mfa_failed`), count the token's attempt, raise."""
        login = taken.login
        await self._auth.records.record_failure(
            user_id=login.user_id,
            username=login.username[:255],
            ip=login.ip[:45],
            user_agent=login.user_agent,
            reason="mfa_failed",
        )
        await self._session.commit()
        await self._kit.pending.failed(taken)
        metrics.login_attempts.add(1, {"outcome": "failure", "reason": "mfa_failed"})
        metrics.record_mfa_challenge(proof.method, "failure")
        log.info("login.failed", reason="mfa_failed", ip=login.ip, attempt=taken.attempt)
        raise MfaInvalid


def _unchanged(user: LoginUser | None, login: PendingLogin) -> bool:
    """The user as the password check left it: there, active, not revoked since
    (tokens_valid_after moved)."""
    return (
        user is not None
        and user.id == login.user_id
        and user.is_active
        and _same(user.tokens_valid_after, login.tokens_valid_after)
    )


def _same(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 1e-3
