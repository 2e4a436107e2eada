"""The password policy, applied wherever a password is set (CLI, and every endpoint that sets one).

Each refusal names a reason clients can act on: `too_short`, `too_long`, `too_common`,
`contains_username`, `too_weak`. The common-passwords list is zxcvbn's (30,000 passwords from
real leaks, shipped inside the package: no network); the score, when PASSWORD_MIN_SCORE is set,
is zxcvbn's 0-4 estimate with the username and e-mail as known inputs.
"""

from __future__ import annotations

import functools

import msgspec

from auth_service.lib.errors import InvalidInput

__all__ = ["MAX_PASSWORD_BYTES", "PasswordPolicy", "PasswordPolicyError"]

MAX_PASSWORD_BYTES = 1024
_SCORED_CHARS = 72  # zxcvbn refuses longer input (its work grows fast with length)


class PasswordPolicyError(InvalidInput):
    """A password the policy refuses: `reason` is the machine-readable code, str() the sentence."""

    def __init__(self, reason: str, message: str, field: str = "password") -> None:
        super().__init__(field, message, reason=reason)


@functools.cache
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _is_common(password: str) -> bool:
    folded = password.strip().casefold()
    return folded in _common()


class PasswordPolicy(msgspec.Struct, frozen=True):
    """PASSWORD_MIN_LENGTH characters or more, at most 1024 bytes, no NUL, not the username or
    e-mail (nor containing them), not a common password, and a zxcvbn score of at least
    PASSWORD_MIN_SCORE when that is set (0: not scored)."""

    min_length: int = 12
    min_score: int = 0

    def check(self, password: str, *, username: str, email: str = "", field: str = "password") -> None:
        """Raises PasswordPolicyError with the first rule the password breaks."""
        if len(password) < self.min_length:
            raise PasswordPolicyError("too_short", f"password must be at least {self.min_length} characters", field)
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise PasswordPolicyError("too_long", f"password must be at most {MAX_PASSWORD_BYTES} bytes", field)
        if "\x00" in password:
            raise PasswordPolicyError("invalid_character", "password must not contain NUL characters", field)
        folded = password.casefold()
        local = email.partition("@")[0]
        for name in (username, email, local):
            if len(name) >= 3 and name.casefold() in folded:
                raise PasswordPolicyError(
                    "contains_username", "password must not contain the username or e-mail", field
                )
        if _is_common(password):
            raise PasswordPolicyError("too_common", "password is one of the most common passwords", field)
        if self.min_score:
            from zxcvbn import zxcvbn

            score = zxcvbn(password[:_SCORED_CHARS], user_inputs=[username, email])["score"]
            if score < self.min_score:
                raise PasswordPolicyError(
                    "too_weak", f"password is too easy to guess (strength {score} of 4, {self.min_score} needed)", field
                )
