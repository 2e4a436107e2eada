"""The owner's second factors: TOTP enrolment (pending until its first right code), disabling
it, and recovery codes. Every change is audited (`mfa.totp.enable`, `mfa.totp.disable`,
`mfa.recovery.regenerate`) and mailed to the owner in its own transaction; codes checked here
are single-use like a login's (the TOTP step is claimed) and limited per user (RATE_LIMIT_MFA).

An enrolment started with the mfa_token of a login that must enrol (MFA_REQUIRED_ROLES) needs no
password (the login just proved it); its confirmation turns that pending login into one that
finishes with POST /auth/mfa and a fresh code.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.account.schemas import TotpSetup
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.factors import MfaKit, check_totp
from auth_service.domain.auth.mfa.notify import factor_changed
from auth_service.domain.auth.mfa.store import FactorStore
from auth_service.domain.auth.service import AuthService, ClientInfo
from auth_service.lib.audit import Actor
from auth_service.lib.crypto import recovery_codes, totp
from auth_service.lib.errors import Conflict, InvalidCredentials, MfaInvalid, NotFound
from auth_service.lib.principal import Subject
from observability import metrics

__all__ = ["TotpEnrolment"]

log = structlog.get_logger()


class TotpEnrolment:
    """One request's changes to the caller's TOTP and recovery codes; commits its session.

    Args:
        session: the request's database session.
        kit: the second factors' keys and Redis state.
        limits: the rate-limit policy (RATE_LIMIT_MFA for every code checked).
    """

    def __init__(self, session: AsyncSession, kit: MfaKit, limits: EndpointLimits) -> None:
        self._session = session
        self._kit = kit
        self._limits = limits
        self._store = FactorStore(session)

    async def check_password(self, auth: AuthService, subject: Subject, current: str, client: ClientInfo) -> None:
        """`current` checked like a login's password (the same limits; a wrong one counts
        against the username's failure budget and is AUTH_INVALID_CREDENTIALS)."""
        attempt = await auth.authenticate(subject.username, current, client)
        await self._limits.after_login(client.ip, subject.username, attempt.gate, user_id=subject.user_id)
        if str(attempt.user.id) != subject.user_id:
            raise InvalidCredentials

    async def start(self, user_id: uuid.UUID, account_name: str) -> TotpSetup:
        """A new secret, pending until confirmed (an unconfirmed earlier one is replaced).

        Raises:
            Conflict: a confirmed authenticator exists (disable it first).
        """
        secret = totp.new_secret()
        stored = await self._store.put_pending_totp(user_id, totp.encrypt_secret(self._kit.totp_key, secret, user_id))
        if not stored:
            await self._session.rollback()
            raise Conflict("TOTP is already enabled: disable it first")
        await self._session.commit()
        uri = totp.otpauth_uri(secret, account_name=account_name, issuer=self._kit.issuer)
        log.info("mfa.totp_enrolment_started", user_id=str(user_id))
        return TotpSetup(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))

    async def confirm(self, subject: Subject, code: str, actor: Actor) -> list[str]:
        """The first right code confirms the authenticator: TOTP is now required at login, and
        ten new recovery codes (the old set dies) are returned, once.

        Raises:
            NotFound: no enrolment is pending.
            MfaInvalid: a wrong code.
        """
        user_id = subject.id
        await self._limits.code_check(subject.user_id)
        row = await self._store.totp(user_id)
        if row is None or row.confirmed:
            await self._session.rollback()
            raise NotFound("no TOTP enrolment is pending")
        if not await check_totp(self._store, self._kit, user_id, code, confirming=True, row=row):
            await self._session.rollback()
            raise MfaInvalid
        codes = await self._new_codes(user_id)
        await factor_changed(self._session, actor, user_id, "mfa.totp.enable", "totp_enabled")
        await self._session.commit()
        metrics.record_mfa_enrolment("totp")
        if subject.how == "mfa_token" and subject.mfa_token:
            await self._kit.pending.set_methods(subject.mfa_token, ("totp", "recovery_code"))
        log.info("mfa.totp_enabled", user_id=str(user_id))
        return codes

    async def check_code(self, subject: Subject, code: str) -> None:
        """A current code of the confirmed authenticator (claimed: single use).

        Raises:
            NotFound: TOTP is not enabled.
            MfaInvalid: a wrong or replayed code.
        """
        await self._limits.code_check(subject.user_id)
        row = await self._store.totp(subject.id)
        if row is None or not row.confirmed:
            await self._session.rollback()
            raise NotFound("TOTP is not enabled")
        if not await check_totp(self._store, self._kit, subject.id, code, row=row):
            await self._session.rollback()
            raise MfaInvalid
        await self._session.commit()

    async def disable(self, user_id: uuid.UUID, actor: Actor) -> None:
        """Remove the authenticator and the recovery codes (the caller checked a code or the
        password). Passkeys stay.

        Raises:
            NotFound: TOTP is not enabled.
        """
        removed = await self._store.delete_totp(user_id)
        if not removed:
            await self._session.rollback()
            raise NotFound("TOTP is not enabled")
        await self._store.delete_codes(user_id)
        await factor_changed(self._session, actor, user_id, "mfa.totp.disable", "totp_disabled")
        await self._session.commit()
        log.info("mfa.totp_disabled", user_id=str(user_id))

    async def regenerate(self, subject: Subject, code: str, actor: Actor) -> list[str]:
        """Ten new recovery codes for a current TOTP code; the old set dies.

        Raises:
            NotFound: TOTP is not enabled. MfaInvalid: a wrong code.
        """
        await self.check_code(subject, code)
        codes = await self._new_codes(subject.id)
        await factor_changed(self._session, actor, subject.id, "mfa.recovery.regenerate", "recovery_regenerated")
        await self._session.commit()
        log.info("mfa.recovery_regenerated", user_id=subject.user_id)
        return codes

    async def _new_codes(self, user_id: uuid.UUID) -> list[str]:
        codes = recovery_codes.generate_codes()
        hashes = [recovery_codes.hash_code(self._kit.recovery_key, code, user_id) for code in codes]
        await self._store.replace_codes(user_id, hashes)
        return codes
