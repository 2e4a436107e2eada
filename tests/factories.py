"""Test data builders: real rows through the real repositories."""

from __future__ import annotations

import uuid
from typing import Any

import bcrypt
from sqlalchemy.ext.asyncio import async_sessionmaker

from auth_service.domain.users.repository import UserRepository
from auth_service.settings import Settings
from db.models import User
from tests.conftest import run_engine

DEFAULT_PASSWORD = "correct horse battery staple"


async def create_user(
    settings: Settings,
    *,
    username: str | None = None,
    password: str = DEFAULT_PASSWORD,
    roles: list[str] | None = None,
    is_active: bool = True,
    legacy_bcrypt: bool = False,
    password_hash: str | None = None,
) -> User:
    """Insert a user with a real hash (argon2id at the settings' parameters, or legacy bcrypt)."""
    from argon2 import PasswordHasher as Argon2

    username = username or f"user{uuid.uuid4().hex[:8]}"
    if password_hash is None:
        if legacy_bcrypt:
            password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        else:
            password_hash = Argon2(
                memory_cost=settings.passwords.memory_kib,
                time_cost=settings.passwords.time_cost,
                parallelism=settings.passwords.parallelism,
            ).hash(password)
    async with async_sessionmaker(run_engine(settings.database.url), expire_on_commit=False)() as session:
        user = User(
            username=username,
            email=f"{username}@example.com",
            password_hash=password_hash,
            roles=roles or [],
            is_active=is_active,
        )
        await UserRepository(session=session).add(user)
        await session.commit()
        return user


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
