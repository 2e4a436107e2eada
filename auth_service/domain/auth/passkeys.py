"""Passkey assertions, for any use: the options of `navigator.credentials.get()` and the check of
its answer against the stored credential, with the sign-counter rule applied in the database.

Two uses share it: the passwordless login (domain/auth/passkey_login.py: no user yet, the
browser offers any discoverable passkey of the RP) and the second step of a password login
(the user is known; `expected_user_id` pins the credential to them). Where the challenge waits
between the two requests is the caller's: a ceremony in Redis for the passwordless login, the
pending login for a second step.

Every refusal is one `PasskeyRefused` (401 AUTH_INVALID_CREDENTIALS, the same body whatever
went wrong); its `reason` goes to the login record, the log and the metric only.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any, Literal, NamedTuple

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.passkey_store import PasskeyStore
from auth_service.lib.crypto.webauthn import (
    CeremonyOptions,
    ClonedAuthenticatorError,
    WebAuthnError,
    assertion_credential_id,
    assertion_user_handle,
    authentication_options,
    verify_authentication,
)
from auth_service.lib.errors import InvalidCredentials
from auth_service.settings.factors import MfaSettings

__all__ = ["PasskeyAssertions", "PasskeyRefused", "RelyingParty", "VerifiedPasskey"]

log = structlog.get_logger()

# Why an assertion was refused (login_records.failure_reason gets "passkey_" + this).
Reason = Literal["malformed", "unknown", "invalid", "cloned", "inactive", "expired"]


class PasskeyRefused(InvalidCredentials):
    """An assertion that does not sign in: unknown credential, bad signature, wrong origin or RP,
    a used or expired ceremony, a cloned authenticator, an inactive user. One answer for all."""

    message = "Invalid passkey"

    def __init__(self, reason: Reason, *, user_id: uuid.UUID | None = None, username: str | None = None) -> None:
        super().__init__()
        self.reason: Reason = reason
        self.user_id = user_id
        self.username = username


class RelyingParty(NamedTuple):
    """Who we are to the browser: WEBAUTHN_RP_ID, WEBAUTHN_RP_NAME, WEBAUTHN_ORIGINS (resolved)."""

    rp_id: str
    rp_name: str
    origins: tuple[str, ...]

    @classmethod
    def from_settings(cls, mfa: MfaSettings) -> RelyingParty:
        return cls(mfa.rp_id, mfa.rp_name, tuple(mfa.origins))


class VerifiedPasskey(NamedTuple):
    """An accepted assertion: which passkey, whose, and whether the user was verified."""

    passkey_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    user_verified: bool


class PasskeyAssertions:
    """Assertion options and their check, on the request's session.

    Args:
        session: the request's session; `verify` commits the counter it moves.
        rp: the relying party.
    """

    def __init__(self, session: AsyncSession, rp: RelyingParty) -> None:
        self._session = session
        self._store = PasskeyStore(session)
        self.rp = rp

    async def options_for(self, user_id: uuid.UUID | None) -> CeremonyOptions:
        """Options for `navigator.credentials.get()`.

        Args:
            user_id: None for a passwordless login (empty allowCredentials: the browser offers
                the RP's discoverable passkeys; user verification required, since the passkey is
                the whole login); else the user's passkeys as a second factor (user verification
                preferred: the password was the first factor).
        """
        if user_id is None:
            return authentication_options(rp_id=self.rp.rp_id, user_verification="required")
        allow = await self._store.known(user_id)
        await self._session.commit()
        return authentication_options(rp_id=self.rp.rp_id, allow=allow, user_verification="preferred")

    async def verify(
        self, credential: dict[str, Any], challenge: bytes, expected_user_id: uuid.UUID | None
    ) -> VerifiedPasskey:
        """Check an assertion answering `challenge`, and spend its counter.

        Args:
            credential: the browser's `PublicKeyCredential.toJSON()`.
            challenge: the challenge of the options it answers (the caller took it, once).
            expected_user_id: the user it must be from (a second factor); None for a passwordless
                login, which then requires user verification and the credential's user handle.

        Raises:
            PasskeyRefused: anything wrong (its `reason` says what, for the record only).
        """
        try:
            credential_id = assertion_credential_id(credential)
            user_handle = assertion_user_handle(credential)
        except WebAuthnError:
            raise PasskeyRefused("malformed") from None
        stored = await self._store.for_assertion(credential_id)
        await self._session.commit()
        if stored is None or (expected_user_id is not None and stored.user_id != expected_user_id):
            raise PasskeyRefused("unknown")  # unknown, or another user's passkey: the same answer
        refuse = functools.partial(PasskeyRefused, user_id=stored.user_id, username=stored.username)
        passwordless = expected_user_id is None
        if (user_handle is None and passwordless) or (user_handle is not None and user_handle != stored.user_id.bytes):
            raise refuse("invalid")  # a discoverable credential names its user
        try:
            checked = verify_authentication(
                credential=credential,
                expected_challenge=challenge,
                rp_id=self.rp.rp_id,
                origins=self.rp.origins,
                public_key=stored.public_key,
                sign_count=stored.sign_count,
                require_user_verification=passwordless,
            )
        except ClonedAuthenticatorError:
            self._cloned(stored.id, stored.user_id, stored.sign_count)
            raise refuse("cloned") from None
        except WebAuthnError as exc:
            log.info("passkey.assertion_refused", user_id=str(stored.user_id), credential=str(stored.id), why=str(exc))
            raise refuse("invalid") from None
        # The check above read the counter; this statement moves it only if it is still a step
        # forward, so of two assertions racing with one counter value only one is accepted.
        moved = await self._store.spend(stored.id, checked.new_sign_count, checked.backed_up, dt.datetime.now(dt.UTC))
        await self._session.commit()
        if not moved:
            self._cloned(stored.id, stored.user_id, stored.sign_count)
            raise refuse("cloned")
        if not stored.is_active:
            raise refuse("inactive")
        return VerifiedPasskey(stored.id, stored.user_id, stored.username, checked.user_verified)

    @staticmethod
    def _cloned(passkey_id: uuid.UUID, user_id: uuid.UUID, stored_count: int) -> None:
        """A valid signature whose counter did not go up: worth an operator's look (a copied key,
        or a replay), so a warning; the caller counts it with its outcome."""
        log.warning(
            "passkey.cloned_authenticator",
            user_id=str(user_id),
            credential=str(passkey_id),
            stored_sign_count=stored_count,
        )
