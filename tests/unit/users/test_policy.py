"""The password policy: each refusal carries the reason code the API and the CLI report."""

from __future__ import annotations

import pytest

from auth_service.domain.users.policy import PasswordPolicy, PasswordPolicyError
from auth_service.lib.errors import ErrorDetail


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "too_short"),
        ("a" * 1025, "too_long"),
        ("é" * 600, "too_long"),  # 600 characters, 1200 bytes
        ("Alice-Example", "contains_username"),
        ("my alice-example pass", "contains_username"),
        ("x alice.w@example.com x", "contains_username"),
        ("ALICE.W is my name", "contains_username"),  # the e-mail's local part
        ("password1234", "too_common"),
        ("Qwertyuiop123", "too_common"),  # case does not make it uncommon
        ("twelve chars\x00", "invalid_character"),
    ],
)
def test_each_refusal_names_its_reason(password: str, reason: str) -> None:
    with pytest.raises(PasswordPolicyError) as info:
        PasswordPolicy().check(password, username="alice-example", email="alice.w@example.com")
    assert info.value.reason == reason
    assert info.value.details == [ErrorDetail(field="password", message=str(info.value), reason=reason)]


def test_a_good_password_passes_and_the_length_is_a_setting() -> None:
    PasswordPolicy().check("correct horse battery staple", username="alice", email="alice@example.com")
    with pytest.raises(PasswordPolicyError, match="at least 20"):
        PasswordPolicy(min_length=20).check("a fine password!", username="alice")


def test_a_minimum_score_refuses_guessable_passwords() -> None:
    strict = PasswordPolicy(min_score=4)
    with pytest.raises(PasswordPolicyError) as info:
        strict.check("aaaaaaaaaaaab", username="bob")
    assert info.value.reason == "too_weak"
    strict.check("violet tractor umbrella 9 lagoon", username="bob")
    # Long input is scored on its first 72 characters (zxcvbn refuses more): bounded work, no hang.
    strict.check("violet tractor umbrella 9 lagoon " * 30, username="bob")
