"""The admin API's request bodies (a user made or changed by an admin)."""

from __future__ import annotations

import msgspec

from auth_service.domain.users.schemas import Email, NewPassword, Roles, Username
from auth_service.lib.http import strict_body

__all__ = ["AdminUserCreate", "AdminUserPatch"]


@strict_body
class AdminUserCreate(msgspec.Struct, forbid_unknown_fields=True):
    """An account made by an admin: with a password (verified at once), or without one (the user
    gets an invitation mail with a set-password link and is verified by using it)."""

    username: Username
    email: Email
    roles: Roles = msgspec.field(default_factory=list)
    password: NewPassword | None = None


@strict_body
class AdminUserPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields given change. A role change or a deactivation ends every token of the user."""

    email: Email | msgspec.UnsetType = msgspec.UNSET
    roles: Roles | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
