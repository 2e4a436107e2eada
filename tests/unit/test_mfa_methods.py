"""What a login must prove after its password (the challenge's `methods`), and the one-proof rule
of the second step's body."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from auth_service.domain.auth.mfa.factors import methods_for
from auth_service.domain.auth.mfa.step import Proof
from auth_service.domain.auth.repository import LoginUser
from auth_service.lib.errors import InvalidInput

ADMINS = frozenset({"admin"})


def _user(roles: list[str], *, totp: bool = False, passkeys: int = 0, codes: int = 0) -> LoginUser:
    return LoginUser(uuid.uuid4(), "u", "h", True, roles, None, True, totp, passkeys, codes)


@pytest.mark.parametrize(
    ("user", "methods"),
    [
        (_user(["user"]), []),
        (_user(["user"], totp=True, codes=10), ["totp", "recovery_code"]),
        (_user(["user"], totp=True, codes=0), ["totp", "recovery_code"]),
        (_user(["user"], passkeys=2), ["webauthn"]),
        (_user(["user"], totp=True, passkeys=1, codes=3), ["totp", "recovery_code", "webauthn"]),
        (_user(["admin"]), ["enroll"]),
        (_user(["admin"], totp=True, codes=10), ["totp", "recovery_code"]),
    ],
)
def test_methods_follow_the_users_factors_and_roles(user: LoginUser, methods: list[str]) -> None:
    assert methods_for(user, ADMINS) == methods


def test_a_proof_is_exactly_one_answer() -> None:
    assert Proof.of("123456", msgspec.UNSET) == Proof(code="123456")
    assert Proof.of(msgspec.UNSET, "abcd-efgh-jk").method == "recovery_code"
    for code, recovery in ((msgspec.UNSET, msgspec.UNSET), ("123456", "abcd-efgh-jk")):
        with pytest.raises(InvalidInput):
            Proof.of(code, recovery)
