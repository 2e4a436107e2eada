"""Wire and input types of user management."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated, get_args

import msgspec

from auth_service.domain.notifications.mailer import one_mailbox
from auth_service.lib.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "EMAIL_PATTERN",
    "USERNAME_PATTERN",
    "Email",
    "InvalidUserData",
    "MeRead",
    "MfaState",
    "NewPassword",
    "Role",
    "Roles",
    "UserCreate",
    "UserExistsError",
    "UserNotFound",
    "UserRead",
    "Username",
    "new_password_fields",
    "stored_email",
]

# msgspec matches patterns with re.search, where `$` also matches before a final newline:
# `(?!\n)` after it refuses "admin1\n" (which would otherwise be a second account beside
# "admin1"). The same text is the OpenAPI pattern, where it means the same.
USERNAME_PATTERN = r"^[A-Za-z0-9._@+-]+$(?!\n)"
# One @, no whitespace or control characters anywhere, a dot in the domain.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$(?!\n)"

Username = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=64,
        pattern=USERNAME_PATTERN,
        description="3-64 characters: letters, digits and . _ @ + -",
    ),
]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=255, pattern=EMAIL_PATTERN, description="E-mail address")]
# A password being set. Its length is the policy's to judge (PASSWORD_MIN_LENGTH characters, at
# most 1024 bytes: domain/users/policy.py), so that a refusal names its reason (too_short,
# too_long) rather than being a bare length error; the API document carries the same bounds,
# taken from the configured policy when the app is built (server/openapi.py).
NewPassword = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$",
        description="The new password: PASSWORD_MIN_LENGTH characters or more and at most 1024 bytes of UTF-8, "
        "not containing the username or e-mail, not a common password. A refusal is a VALIDATION_ERROR whose "
        "`details` name the reason (too_short, too_long, contains_username, too_common, too_weak).",
    ),
]


class UserNotFound(NotFound):
    """No such user (or it was deleted meanwhile)."""


class UserExistsError(Conflict):
    """A user with that username or e-mail already exists."""


class InvalidUserData(InvalidInput):
    """A username, e-mail or role that its schema refuses; str() says which rule, in words."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)

    @classmethod
    def from_validation(cls, exc: msgspec.ValidationError) -> InvalidUserData:
        # msgspec says "Expected `str` matching regex '…' - at `$.email`": name the field and its rule.
        match = re.search(r"at `\$\.(\w+)", str(exc))
        field = match.group(1) if match else "body"
        return cls(field, _FIELD_RULES.get(field, str(exc).split(" - at ")[0]))


_FIELD_RULES = {
    "username": "a username is 3-64 characters: letters, digits and . _ @ + -",
    "email": "not an e-mail address (expected one like name@example.com, at most 255 characters)",
    "roles": "a role is a lowercase name: a letter, then up to 63 letters, digits, _ or -",
    "password": "a password is a string",
}


class _StoredEmail(msgspec.Struct):
    email: Email


def stored_email(value: str) -> str:
    """An address as it is stored and mailed: NFKC first, then the Email rules and "exactly one
    mailbox" on that. Every path that takes an address goes through here (sign-up, the owner's
    change, the admin API and the CLI), because NFKC changes what was checked: a full-width
    comma and at sign (U+FF0C, U+FF20) become ASCII (one value, two mailboxes) and U+FDFA
    becomes 18 characters (past the column).

    Raises:
        InvalidUserData: the normalised value is not one e-mail address of at most 255 characters.
    """
    email = unicodedata.normalize("NFKC", value)
    try:
        msgspec.convert({"email": email}, _StoredEmail)
    except msgspec.ValidationError as exc:
        raise InvalidUserData.from_validation(exc) from None
    if one_mailbox(email) is None:
        raise InvalidUserData("email", _FIELD_RULES["email"])
    return email


Role = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,63}$(?!\n)", description="Role name")]


class UserCreate(msgspec.Struct):
    username: Username
    email: Email
    password: str
    roles: list[Role] = msgspec.field(default_factory=list)


class MfaState(msgspec.Struct):
    totp: bool = False
    passkeys: int = 0
    recovery_codes_left: int = 0


class MeRead(msgspec.Struct):
    id: str
    username: str
    email: str
    email_verified: bool
    roles: list[str]
    created_at: dt.datetime
    mfa: MfaState


class UserRead(msgspec.Struct):
    id: str
    username: str
    email: str
    roles: list[str]
    is_active: bool


Roles = Annotated[list[Role], msgspec.Meta(max_length=32, description="Role names (`admin` opens the admin API)")]


def new_password_fields(struct: type[msgspec.Struct]) -> list[str]:
    """The fields of a request Struct that set a password (typed NewPassword, or optionally)."""
    return [
        field.name
        for field in msgspec.structs.fields(struct)
        if field.type == NewPassword or NewPassword in get_args(field.type)
    ]
