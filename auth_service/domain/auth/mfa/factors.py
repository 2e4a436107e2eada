"""What a user must prove after the password, and the checks of a TOTP code and a recovery
code, shared by the second step, the enrolment endpoints and the disabling of a factor.

`methods_for` reads the factors from the login's own read of the user (repository.py's scalar
subqueries): a user without a factor pays nothing for this.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import structlog

from auth_service.domain.auth.mfa.pending import ENROLL, PendingLogins, ReplayMarks
from auth_service.domain.auth.mfa.store import FactorStore, TotpRow
from auth_service.domain.auth.repository import LoginUser
from auth_service.lib.crypto import recovery_codes, totp

__all__ = ["MfaKit", "check_recovery_code", "check_totp", "methods_for"]

log = structlog.get_logger()


class MfaKit:
    """The second factors' long-lived parts, built once per process (container.py).

    Args:
        pending: the pending logins (Redis).
        replay: TOTP replay marks (Redis, the fast path).
        totp_key: the `totp` purpose key (secrets at rest).
        recovery_key: the `recovery-code` purpose key (code HMACs).
        required_roles: MFA_REQUIRED_ROLES.
        issuer: TOTP_ISSUER, the name authenticator apps show.
    """

    __slots__ = ("issuer", "pending", "recovery_key", "replay", "required_roles", "totp_key")

    def __init__(
        self,
        *,
        pending: PendingLogins,
        replay: ReplayMarks,
        totp_key: bytes,
        recovery_key: bytes,
        required_roles: Sequence[str],
        issuer: str,
    ) -> None:
        self.pending = pending
        self.replay = replay
        self.totp_key = totp_key
        self.recovery_key = recovery_key
        self.required_roles = frozenset(required_roles)
        self.issuer = issuer


def methods_for(user: LoginUser, required_roles: frozenset[str]) -> list[str]:
    """The proofs a login of `user` takes after the password; [] for none (the session opens);
    ["enroll"] for a user whose role requires a factor it does not have yet."""
    methods: list[str] = []
    if user.totp:
        methods.append("totp")
    if user.totp or user.recovery_codes_left:
        methods.append("recovery_code")
    if user.passkeys:
        methods.append("webauthn")
    if not methods and required_roles.intersection(user.roles or ()):
        return [ENROLL]
    return methods


async def check_totp(
    store: FactorStore,
    kit: MfaKit,
    user_id: uuid.UUID,
    code: str,
    *,
    confirming: bool = False,
    now: float | None = None,
    row: TotpRow | None,
) -> bool:
    """Is `code` a fresh code of the user's authenticator (confirmed; pending when
    `confirming`, which then confirms it)? Claims its step in the caller's transaction.

    A code is accepted once: its step must be later than the last accepted one, which the
    conditional UPDATE stores atomically (the truth, also after a Redis flush); the Redis mark
    refuses an obvious replay without the write. `row` is the user's authenticator as the caller
    read it (`FactorStore.totp`, or with the user in the second step's read); None for none.
    """
    if row is None or row.confirmed == confirming:
        return False
    try:
        secret = totp.decrypt_secret(kit.totp_key, row.secret_ciphertext, user_id)
    except totp.UndecryptableSecretError:
        log.error("mfa.totp_undecryptable", user_id=str(user_id))
        return False
    step = totp.matching_step(secret, code, time.time() if now is None else now, row.last_used_step)
    if step is None:
        return False
    if not await kit.replay.first_use(user_id, row.secret_ciphertext, step):
        log.info("mfa.totp_replay", user_id=str(user_id), source="redis")
        return False
    if not await store.claim_step(user_id, step, confirming=confirming):
        log.info("mfa.totp_replay", user_id=str(user_id), source="database")
        return False
    return True


async def check_recovery_code(store: FactorStore, kit: MfaKit, user_id: uuid.UUID, typed: str) -> bool:
    """Spend the recovery code `typed`, if it is one of the user's unused ones (once)."""
    wanted = recovery_codes.lookup_hash(kit.recovery_key, typed, user_id)
    if wanted is None:
        return False
    return await store.use_code(user_id, wanted)
