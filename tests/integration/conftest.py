from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from auth_service.app import create_app
from auth_service.settings import Settings
from tests.factories import DEFAULT_PASSWORD, create_user


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def alice(settings: Settings) -> Any:
    return await create_user(settings, username="alice", roles=["user"])


async def login(
    client: AsyncTestClient[Any], username: str = "alice", password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
