"""Names and addresses: one account per person, whatever the case, the Unicode form or a
trailing newline (issue: `create-user $'admin1\\n'` made a second `admin1`)."""

from __future__ import annotations

import re

import msgspec
import pytest

from auth_service.domain.users.schemas import UserCreate
from db.models import identity_key

OK = {"username": "admin1", "email": "admin@example.com", "password": "x"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "admin1\n"),
        ("username", "admin1\n\n"),
        ("username", "ad\nmin"),
        ("username", "admin 1"),
        ("username", "ädmin"),
        ("email", "admin@example.com\n"),
        ("email", "ad\tmin@example.com"),
        ("email", "admin@exa\x00mple.com"),
        ("email", "admin@@example.com"),
        ("email", "no-at-sign.example.com"),
    ],
)
def test_names_and_addresses_refuse_control_characters_and_a_trailing_newline(field: str, value: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**OK, field: value}, UserCreate)


def test_roles_refuse_a_trailing_newline() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**OK, "roles": ["admin\n"]}, UserCreate)


def test_valid_names_pass() -> None:
    user = msgspec.convert({**OK, "email": "İnfo@exämple.com", "roles": ["admin"]}, UserCreate)
    assert user.username == "admin1"


@pytest.mark.parametrize(
    ("a", "b"),
    [("Admin1", "admin1"), ("İnfo@example.com", "i̇nfo@example.com"), ("STRASSE", "straße"), ("ｆｕｌｌ", "full")],
)
def test_identity_keys_fold_case_and_compatibility_forms(a: str, b: str) -> None:
    assert identity_key(a) == identity_key(b)


def test_the_openapi_pattern_means_the_same_in_javascript() -> None:
    """`$(?!\\n)` is plain ECMAScript too, so the published schema agrees with the check."""
    from auth_service.domain.users.schemas import USERNAME_PATTERN

    assert re.search(USERNAME_PATTERN, "admin1") and not re.search(USERNAME_PATTERN, "admin1\n")
    assert "\\Z" not in USERNAME_PATTERN
