"""Wire and input types of user management."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["UserCreate", "UserRead"]


class UserCreate(msgspec.Struct):
    username: Annotated[str, msgspec.Meta(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")]
    email: Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    password: str
    roles: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]] = msgspec.field(default_factory=list)


class UserRead(msgspec.Struct):
    id: str
    username: str
    email: str
    roles: list[str]
    is_active: bool
