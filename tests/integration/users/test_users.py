"""User management on real PostgreSQL: uniqueness by identity key, also under a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from auth_service.container import Resources
from auth_service.domain.admin.by_name import AdminByName
from auth_service.domain.users.schemas import UserCreate, UserExistsError
from auth_service.settings import Settings
from tests.factories import create_user


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Any]:
    engine = create_async_engine(settings.database.url, hide_parameters=True)
    built = Resources(settings, async_sessionmaker(engine, expire_on_commit=False))
    yield built
    await built.close()
    await engine.dispose()


async def _create(resources: Any, username: str, email: str) -> Any:
    async with resources.session_factory() as session:
        return await AdminByName(session, resources.hasher, resources.revocation).create(
            UserCreate(username=username, email=email, password="a long enough password")
        )


async def test_two_concurrent_creates_of_one_name_give_one_user_and_one_clear_refusal(resources: Any) -> None:
    results = await asyncio.gather(
        _create(resources, "Twin", "twin1@example.com"),
        _create(resources, "twin", "twin2@example.com"),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], UserExistsError), results
    assert "$argon2" not in str(refused[0])


@pytest.mark.parametrize(
    ("first", "second"), [("İnfo@example.com", "i̇nfo@example.com"), ("a@EXAMPLE.com", "A@example.com")]
)
async def test_addresses_that_differ_only_by_case_or_form_are_one_address(
    resources: Any, first: str, second: str
) -> None:
    await _create(resources, "first", first)
    with pytest.raises(UserExistsError):
        await _create(resources, "second", second)


def test_list_users_pages_through_every_user(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from auth_service.cli import users as cli_users

    async def make() -> None:
        for i in range(5):
            await create_user(settings, username=f"paged{i}")

    asyncio.run(make())
    monkeypatch.setattr(cli_users, "_PAGE", 2)  # five users over pages of two
    cli_users._list_users(settings)
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == [f"paged{i}" for i in range(5)]
    assert out.strip().endswith("5 user(s)")
