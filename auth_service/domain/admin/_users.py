"""A user as the admin API reads it (the /users/me shape, its factors, is_active, updated_at),
and the statement columns that read it: shared by the admin's changes and its listings."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from auth_service.domain.auth.mfa.store import factor_columns
from auth_service.domain.users.schemas import MeRead, MfaState, UserNotFound
from auth_service.lib.errors import Conflict
from db.sql import users

__all__ = ["BASE_COLUMNS", "COLUMNS", "AdminUserRead", "LastAdmin", "parse_id", "read_user"]


class AdminUserRead(MeRead):
    """A user as the admin API shows it: the /users/me shape plus is_active and updated_at."""

    is_active: bool
    updated_at: dt.datetime


class LastAdmin(Conflict):
    """The change would leave no active admin."""


_u = users.c
BASE_COLUMNS = (_u.id, _u.username, _u.email, _u.email_verified, _u.roles, _u.created_at, _u.is_active, _u.updated_at)
# The user's second factors beside its row (correlated subqueries: one statement per read, also
# in an UPDATE's RETURNING). An INSERT's RETURNING cannot correlate them: a new user has none.
COLUMNS = (*BASE_COLUMNS, *factor_columns(users))


def read_user(row: Any) -> AdminUserRead:
    mapping = row._mapping
    mfa = MfaState(
        totp=bool(mapping.get("mfa_totp", False)),
        passkeys=int(mapping.get("mfa_passkeys", 0) or 0),
        recovery_codes_left=int(mapping.get("mfa_codes_left", 0) or 0),
    )
    return AdminUserRead(
        str(row.id),
        row.username,
        row.email,
        row.email_verified,
        list(row.roles or []),
        row.created_at,
        mfa,
        row.is_active,
        row.updated_at,
    )


def parse_id(user_id: str) -> uuid.UUID:
    """A path's user id; anything that is not a UUID is an unknown user (404), like a missing one."""
    try:
        return uuid.UUID(user_id)
    except ValueError:
        raise UserNotFound("no user with that id") from None
